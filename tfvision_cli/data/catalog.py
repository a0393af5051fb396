"""What a dataset name means: a TFDS name, a built-in dataset, or a folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError


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


class Dataset:
    """A dataset tfvision can train on: its info and its splits as uint8 arrays."""

    info: DatasetInfo

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images (N, H, W, C) uint8, labels (N,) int64) of one split."""
        raise NotImplementedError

    def has_split(self, split: str) -> bool:
        return split in self.info.splits


# Built-in datasets register themselves here, like models do in the model registry.
_BUILTIN: dict[str, Callable[[], Dataset]] = {}


def register_dataset(name: str):
    def decorator(fn: Callable[[], Dataset]) -> Callable[[], Dataset]:
        if name in _BUILTIN:
            raise ValueError(f"dataset {name!r} is registered twice")
        _BUILTIN[name] = fn
        return fn

    return decorator


def builtin_names() -> list[str]:
    _import_builtins()
    return sorted(_BUILTIN)


def _import_builtins() -> None:
    from tfvision_cli.data import builtin  # noqa: F401  (registers on import)


# Facts about well-known TFDS datasets, so `data list` answers without TensorFlow.
KNOWN_TFDS = [
    ("mnist", (28, 28, 1), 10, {"train": 60000, "test": 10000}, "handwritten digits"),
    ("fashion_mnist", (28, 28, 1), 10, {"train": 60000, "test": 10000}, "Zalando clothing"),
    ("kmnist", (28, 28, 1), 10, {"train": 60000, "test": 10000}, "Kuzushiji (cursive Japanese)"),
    ("emnist/digits", (28, 28, 1), 10, {"train": 240000, "test": 40000}, "extended MNIST digits"),
    ("cifar10", (32, 32, 3), 10, {"train": 50000, "test": 10000}, "tiny colour photos"),
    ("cifar100", (32, 32, 3), 100, {"train": 50000, "test": 10000}, "tiny colour photos"),
    (
        "svhn_cropped",
        (32, 32, 3),
        10,
        {"train": 73257, "test": 26032, "extra": 531131},
        "street view house numbers",
    ),
    ("eurosat/rgb", (64, 64, 3), 10, {"train": 27000}, "Sentinel-2 land use"),
]


def is_path_spec(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or Path(spec).is_dir()


def open_dataset(
    spec: str,
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> Dataset:
    """Resolve a dataset name or folder to a Dataset.

    spec: a TFDS name (`mnist`, `cifar10:3.0.2`), a built-in name (`digits`), a folder written
    by `tfvision preprocess`, or a raw folder of class sub-folders of images.
    """
    _import_builtins()
    if spec in _BUILTIN:
        return _BUILTIN[spec]()
    if is_path_spec(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise UsageError(f"dataset folder {spec} does not exist")
        if not path.is_dir():
            raise UsageError(f"{spec} is a file, not a dataset folder")
        from tfvision_cli.data import folder

        prepared = folder.find_prepared(path)
        if prepared is not None:
            return folder.PreparedDataset(prepared)
        return folder.ImageFolderDataset(path, image_size=image_size, channels=channels)
    from tfvision_cli.data import tfds_source

    return tfds_source.TfdsDataset.from_name(spec, data_dir=data_dir, image_size=image_size)


def class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels.astype(np.int64), minlength=num_classes).tolist()


def pixel_stats(images: np.ndarray) -> dict[str, list[float]]:
    """Per-channel mean and std of uint8 images on the 0-255 scale."""
    channels = images.shape[-1]
    flat = images.reshape(-1, channels)
    mean = np.zeros(channels)
    sq = np.zeros(channels)
    step = 1 << 22
    for i in range(0, len(flat), step):  # chunks keep memory flat on large datasets
        chunk = flat[i : i + step].astype(np.float64)
        mean += chunk.sum(0)
        sq += (chunk**2).sum(0)
    n = max(len(flat), 1)
    mean /= n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0))
    return {"mean": [round(float(m), 4) for m in mean], "std": [round(float(s), 4) for s in std]}


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


def describe(dataset: Dataset) -> dict:
    """Everything `data info` reports: info plus class counts and pixel statistics."""
    info = dataset.info
    if hasattr(dataset, "require_prepared"):
        dataset.require_prepared()
    d = info.to_dict()
    per_split: dict[str, list[int]] = {}
    totals = np.zeros(info.num_classes, dtype=np.int64)
    stats = None
    dtype = "uint8"
    for split in info.splits:
        images, labels = dataset.arrays(split)
        counts = class_counts(labels, info.num_classes)
        per_split[split] = counts
        totals += np.asarray(counts)
        if split == "train" or stats is None:
            stats = pixel_stats(images)
        dtype = str(images.dtype)
    d["image_dtype"] = dtype
    d["class_counts"] = {name: int(n) for name, n in zip(info.class_names, totals, strict=True)}
    d["class_counts_per_split"] = per_split
    d["pixel_stats"] = stats
    return d


def sample(dataset: Dataset, split: str, count: int, seed: int = 0):
    """A seeded random sample of (images, labels) from one split."""
    if hasattr(dataset, "require_prepared"):
        dataset.require_prepared()
    if split not in dataset.info.splits:
        raise UsageError(
            f"{dataset.info.name} has no split {split!r} (it has {', '.join(dataset.info.splits)})"
        )
    images, labels = dataset.arrays(split)
    idx = np.sort(
        np.random.default_rng(seed).choice(len(labels), min(count, len(labels)), replace=False)
    )
    return images[idx], labels[idx]
