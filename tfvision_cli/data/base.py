"""The base types of every dataset source: Dataset, DatasetInfo, ArrayDataset, the built-in
registry, and the split and statistics helpers. Sources import this module only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class DatasetInfo:
    name: str
    source: str  # "tfds", "builtin", "prepared" (written by `tfvision preprocess`) or "folder"
    image_shape: tuple[int, int, int]
    class_names: list[str]
    splits: dict[str, int]
    location: str | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["num_classes"] = self.num_classes
        return d


# Datasets whose decoded images take more than this are streamed from disk, not held in memory
# (training with --cache auto, evaluate). Held in memory, a dataset costs about five times its
# decoded size at the peak (the arrays, TensorFlow's copy of them, the shuffle buffer, decoding
# batches): 2.72 GB for 0.49 GB of images (benchmarks/large_data.py).
MEMORY_BUDGET = 256 << 20


@dataclass
class Stream:
    """One split read from disk while it is used, never whole in memory.

    open(shuffle, seed, shard) -> a tf.data.Dataset of (uint8 image (H, W, C), int64 label),
    decoded in parallel; shuffle: in a new order each pass (the files, then a bounded buffer);
    shard: (index, count): this reader's share of the files (multi-worker), None for all.
    """

    count: int  # examples (for sharded readers: before sharding)
    files: int  # files it is read from: FILE sharding needs at least one per worker
    open: Callable[..., object]
    labels: np.ndarray | None = None  # when known without decoding an image
    skipped: list[str] = field(default_factory=list)  # unreadable files met while reading


class Dataset:
    """A dataset tfvision can train on: its info and its splits, as uint8 arrays in memory or
    streamed from disk."""

    info: DatasetInfo
    is_one_set = False  # True when whole() gives every image (a plain folder of class folders)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images (N, H, W, C) uint8, labels (N,) int64) of one split."""
        raise NotImplementedError

    def stream(self, split: str, carve: tuple = ()) -> Stream | None:
        """The split read from disk as it is used; None for sources held in memory anyway.

        carve: ((fraction, seed, inside), ...): keep only the share `fraction` picked with
        `seed` (inside=True) or everything else (False), step by step, as validation and test
        splits are carved out of a dataset that has none."""
        return None

    def decoded_bytes(self, split: str) -> int:
        """What the split's decoded uint8 images take in memory."""
        h, w, c = self.info.image_shape
        return int(self.info.splits.get(split, 0)) * h * w * c

    def has_split(self, split: str) -> bool:
        return split in self.info.splits

    def is_available(self) -> bool:
        """True when the data is on disk and can be read without a download."""
        return True

    def ensure_available(self) -> None:
        """Download and prepare the data if a source knows how; fails fast offline."""

    def require_available(self) -> None:
        """Raise DataError, with the command that fixes it, unless the data can be read."""

    def whole(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every image of a dataset that is one set of images (a plain folder of class
        folders), before any split is carved out of it; None for datasets with real splits."""
        return None


class ArrayDataset(Dataset):
    """A dataset held in memory as arrays per split."""

    def __init__(self, info: DatasetInfo, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.info = info
        self._splits = splits

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self._splits[split]


# Built-in datasets register themselves here, like models do in the model registry.
BUILTIN: dict[str, Callable[[], Dataset]] = {}


def register_dataset(name: str):
    def decorator(fn: Callable[[], Dataset]) -> Callable[[], Dataset]:
        if name in BUILTIN:
            raise ValueError(f"dataset {name!r} is registered twice")
        BUILTIN[name] = fn
        return fn

    return decorator


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels.astype(np.int64), minlength=num_classes).tolist()


def pixel_stats(images: np.ndarray) -> dict[str, list[float]]:
    """Per-channel mean and std of uint8 images on the 0-255 scale."""
    stats = PixelStats(images.shape[-1])
    step = max(1, (1 << 22) // max(1, int(np.prod(images.shape[1:]))))
    for i in range(0, len(images), step):  # chunks keep memory flat on large datasets
        stats.add(images[i : i + step])
    return stats.result()


class PixelStats:
    """Per-channel mean and std accumulated image by image (or chunk by chunk)."""

    def __init__(self, channels: int):
        self.sum = np.zeros(channels)
        self.sq = np.zeros(channels)
        self.n = 0

    def add(self, images: np.ndarray) -> None:
        flat = images.reshape(-1, self.sum.shape[0]).astype(np.float64)
        self.sum += flat.sum(0)
        self.sq += (flat**2).sum(0)
        self.n += len(flat)

    def result(self) -> dict[str, list[float]]:
        n = max(self.n, 1)
        mean = self.sum / n
        std = np.sqrt(np.maximum(self.sq / n - mean**2, 0))
        return {
            "mean": [round(float(m), 4) for m in mean],
            "std": [round(float(s), 4) for s in std],
        }


def stratified_split(
    labels: np.ndarray, fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Seeded split of indices that keeps every class's share in every part.

    fractions: e.g. {"validation": 0.1, "test": 0.1}; the rest goes to "train".
    Returns sorted index arrays per part (parts that get no example are left out).
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], **{k: [] for k in fractions}}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for part, frac in fractions.items():
            n = int(round(frac * len(idx)))
            parts[part].append(idx[start : start + n])
            start += n
        parts["train"].append(idx[start:])
    out = {k: np.sort(np.concatenate(v)) for k, v in parts.items() if v}
    return {k: v for k, v in out.items() if len(v)}


def stratified_sample(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of `count` examples in which every class has its share
    (proportional, largest remainders first, at least one of each class while count allows).

    Every "N examples" tfvision takes (export's parity and calibration images, robustness
    --limit, data preview) is this sample: a dataset sorted by class (a folder tree) gives the
    first N images of one or two classes, never a picture of the whole."""
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum() * count
    take = np.floor(share).astype(np.int64)
    if count >= len(classes):
        take = np.maximum(take, 1)
    while take.sum() > count:  # one per class overshot: trim a class that keeps at least one
        take[np.argmax(np.where(take > 1, take - share, -np.inf))] -= 1
    order = np.argsort(-(share - take), kind="stable")
    for i in order[: count - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(labels == c), min(k, n), replace=False)
        for c, k, n in zip(classes, take, counts, strict=True)
    ]
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)
