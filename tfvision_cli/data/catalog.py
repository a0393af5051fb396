"""What a dataset name means: the sources, tried in order, each asked whether it takes a name.

A built-in name (`digits`), a folder (prepared by `tfvision preprocess`, or raw class folders),
else a TFDS name (`mnist`, `cifar10:3.0.2`). Sources import only data/base.py; this module
imports the sources.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.data import builtin, folder, tfds_source  # noqa: F401  (builtin registers)
from tfvision_cli.data.base import (
    BUILTIN,
    MEMORY_BUDGET,
    Dataset,
    PixelStats,
    class_counts,
    pixel_stats,
    stratified_sample,
)
from tfvision_cli.errors import UsageError, did_you_mean


def builtin_names() -> list[str]:
    return sorted(BUILTIN)


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


def _open_folder(spec: str, data_dir, image_size, channels) -> Dataset:
    path = Path(spec).expanduser()
    if not path.exists():
        raise UsageError(f"dataset folder {spec} does not exist")
    if not path.is_dir():
        raise UsageError(f"{spec} is a file, not a dataset folder")
    prepared = folder.find_prepared(path)
    if prepared is not None:
        return folder.PreparedDataset(prepared)
    return folder.ImageFolderDataset(path, image_size=image_size, channels=channels)


def _open_tfds(spec: str, data_dir, image_size, channels) -> Dataset:
    """A TFDS dataset; `mnist` from the IDX files packaged with tfvision when TFDS has no copy
    of it and cannot download one (the main job works on a machine with no network)."""
    offline = spec == "mnist" and not tfds_source.on_disk(spec, data_dir)
    if offline and not tfds_source.can_download():
        return builtin.packaged_mnist(image_size)
    return tfds_source.TfdsDataset.from_name(spec, data_dir=data_dir, image_size=image_size)


@dataclass(frozen=True)
class Source:
    name: str
    takes: Callable[[str], bool]
    open: Callable[..., Dataset]  # (spec, data_dir, image_size, channels) -> Dataset


# Tried in order: the first source that takes a name opens it.
SOURCES = (
    Source("builtin", lambda spec: spec in BUILTIN, lambda spec, *_: BUILTIN[spec]()),
    Source("folder", is_path_spec, _open_folder),
    Source("tfds", lambda spec: True, _open_tfds),
)


def open_dataset(
    spec: str,
    data_dir: str | None = None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> Dataset:
    """Resolve a dataset name or folder to a Dataset (see SOURCES)."""
    source = next(s for s in SOURCES if s.takes(spec))
    return source.open(spec, data_dir, image_size, channels)


def check_dataset(spec: str, data_dir: str | None = None) -> list[str]:
    """What is wrong with a dataset name, found without TensorFlow: a missing folder, or a name
    that is no built-in, no prepared TFDS dataset and close to one tfvision knows (`mnsit`).
    Other names go to TFDS, which knows every dataset it can download."""
    if spec in BUILTIN:
        return []
    if is_path_spec(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            return [f"dataset folder {spec} does not exist"]
        return [] if path.is_dir() else [f"{spec} is a file, not a dataset folder"]
    name = spec.split(":")[0]
    known = [row[0] for row in KNOWN_TFDS] + list(BUILTIN)
    root = Path(tfds_source.resolve_data_dir(data_dir) or "~/tensorflow_datasets").expanduser()
    if name in known or (root / name).is_dir():
        return []
    close = did_you_mean(name, known)
    return [f"unknown dataset {spec!r}.{close}"] if close else []


def describe(dataset: Dataset) -> dict:
    """Everything `data info` reports: info plus class counts and pixel statistics."""
    info = dataset.info
    dataset.require_available()
    per_split: dict[str, list[int]] = {}
    totals = np.zeros(info.num_classes, dtype=np.int64)
    stats = None
    for split in list(info.splits):
        labels, split_stats = _labels_and_stats(dataset, split)
        counts = class_counts(labels, info.num_classes)
        per_split[split] = counts
        totals += np.asarray(counts)
        if split == "train" or stats is None:
            stats = split_stats
    d = info.to_dict()  # after decoding: a folder's files that fail to decode are left out
    d["image_dtype"] = "uint8"
    d["class_counts"] = {name: int(n) for name, n in zip(info.class_names, totals, strict=True)}
    d["class_counts_per_split"] = per_split
    d["pixel_stats"] = stats
    d["imbalance"] = imbalance(per_split, info.class_names)
    return d


def _labels_and_stats(dataset: Dataset, split: str):
    """A split's labels and pixel statistics: decoded whole, or batch by batch when it is larger
    than memory."""
    stream = dataset.stream(split) if dataset.decoded_bytes(split) > MEMORY_BUDGET else None
    if stream is None:
        images, labels = dataset.arrays(split)
        return labels, pixel_stats(images)
    stats, labels = PixelStats(dataset.info.image_shape[-1]), []
    for images, batch_labels in stream.open().batch(512).as_numpy_iterator():
        stats.add(images)
        labels.append(batch_labels)
    dataset.info.splits[split] = int(sum(len(b) for b in labels))
    return np.concatenate(labels), stats.result()


IMBALANCE_RATIO = 5  # a split whose largest class is this many times its smallest is flagged


def imbalance(per_split: dict[str, list[int]], class_names: list[str]) -> list[str]:
    """One sentence per split whose classes are badly imbalanced."""
    found = []
    for split, counts in per_split.items():
        if not counts:
            continue
        big, small = int(np.argmax(counts)), int(np.argmin(counts))
        if counts[small] == 0 or counts[big] >= IMBALANCE_RATIO * counts[small]:
            found.append(
                f"{split}: class {class_names[big]!r} has {counts[big]:,} examples, "
                f"{class_names[small]!r} {counts[small]:,} "
                "(train with --class-weight balanced)"
            )
    return found


def sample(dataset: Dataset, split: str, count: int, seed: int = 0):
    """A seeded sample of (images, labels) from one split that holds every class in its share
    (base.stratified_sample). A split larger than memory is streamed: only the sample is kept."""
    dataset.require_available()
    if split not in dataset.info.splits:
        raise UsageError(
            f"{dataset.info.name} has no split {split!r} (it has {', '.join(dataset.info.splits)})"
        )
    stream = dataset.stream(split) if dataset.decoded_bytes(split) > MEMORY_BUDGET else None
    if stream is None:
        images, labels = dataset.arrays(split)
        idx = stratified_sample(labels, count, seed)
        return images[idx], labels[idx]
    labels = stream.labels
    if labels is None:  # labels only known by reading: one pass for them, one for the sample
        labels = np.concatenate([y for _, y in stream.open().batch(512).as_numpy_iterator()])
    wanted = stratified_sample(labels, count, seed)
    keep, images, kept_labels, seen = set(wanted.tolist()), [], [], 0
    for x, y in stream.open().batch(512).as_numpy_iterator():
        rows = [i for i in range(len(y)) if seen + i in keep]
        images.append(x[rows])
        kept_labels.append(y[rows])
        seen += len(y)
    return np.concatenate(images), np.concatenate(kept_labels)
