"""Folders of images: raw class-per-folder trees, and datasets written by `tfvision preprocess`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfvision_cli.data.base import ArrayDataset, Dataset, DatasetInfo, stratified_split
from tfvision_cli.data.images import ImageReadError, list_class_folders, open_image, read_image
from tfvision_cli.errors import UsageError

METADATA_FILE = "tfvision.json"
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass
class FolderImages:
    """A decoded class-per-folder tree."""

    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    paths: list[str]
    failures: list[str] = field(default_factory=list)  # "path: reason" per unreadable file


def _guess_size_and_channels(files: list[Path]) -> tuple[tuple[int, int], int]:
    """The most common (H, W) among readable headers, and 1 channel if every image is grey."""
    sizes: Counter = Counter()
    all_grey = True
    for f in files:
        try:
            with open_image(f) as im:
                sizes[(im.height, im.width)] += 1
                all_grey &= im.mode in GREY_MODES
        except Exception:  # unreadable files are reported when decoded
            continue
    if not sizes:
        return (64, 64), 3
    return sizes.most_common(1)[0][0], 1 if all_grey else 3


def read_folder(
    root: Path,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> FolderImages:
    """Decode root/<class>/<images>; unreadable files are listed in failures and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    classes = [(name, files) for name, files in list_class_folders(root) if files]
    if not classes:
        raise UsageError(
            f"{root} holds no class folders with images",
            hint="expected ROOT/<class_name>/<image files> (png, jpg, jpeg, bmp, gif)",
        )
    if len(classes) < 2:
        raise UsageError(
            f"{root} holds a single class ({classes[0][0]!r}); a classifier needs at least two"
        )
    all_files = [f for _, files in classes for f in files]
    if image_size is None or channels is None:
        guessed_size, guessed_channels = _guess_size_and_channels(all_files)
        image_size = image_size or guessed_size
        channels = channels or guessed_channels
    images, labels, paths, failures = [], [], [], []
    done = 0
    for label, (_, files) in enumerate(classes):
        for f in files:
            try:
                images.append(read_image(f, image_size, channels))
                labels.append(label)
                paths.append(str(f))
            except ImageReadError as e:
                failures.append(str(e))
            done += 1
            if on_progress:
                on_progress(done, len(all_files))
    if not images:
        raise UsageError(f"no readable image in {root} ({len(failures)} unreadable files)")
    h, w = image_size
    return FolderImages(
        images=np.stack(images) if images else np.zeros((0, h, w, channels), np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=[name for name, _ in classes],
        paths=paths,
        failures=failures,
    )


# Folder names that mean a split (any case), as Keras, Ultralytics and ImageNet users lay data out.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


def split_folders(root: Path) -> dict[str, Path] | None:
    """{split: folder} when every folder in root is named as a split (root/train/<class>/...,
    root/test/<class>/...); None for a plain tree of class folders."""
    subdirs = [p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not subdirs or any(p.name.lower() not in SPLIT_NAMES for p in subdirs):
        return None
    found: dict[str, Path] = {}
    for p in sorted(subdirs):
        split = SPLIT_NAMES[p.name.lower()]
        if split in found:
            raise UsageError(f"{root} has two {split} folders: {found[split].name} and {p.name}")
        found[split] = p
    return found


def read_split_folders(
    folders: dict[str, Path], image_size=None, channels=None, on_progress=None
) -> dict[str, FolderImages]:
    """Each split folder decoded at one size (the train split's, unless given); their class
    sets must agree."""
    order = sorted(folders, key=lambda k: ("train", "validation", "test").index(k))
    decoded: dict[str, FolderImages] = {}
    for split in order:
        decoded[split] = read_folder(folders[split], image_size, channels, on_progress)
        if image_size is None or channels is None:
            h, w, c = decoded[split].images.shape[1:]
            image_size, channels = image_size or (h, w), channels or c
        for f in range(len(decoded[split].failures)):
            decoded[split].failures[f] = f"{split}: {decoded[split].failures[f]}"
    first = decoded[order[0]].class_names
    for split in order[1:]:
        names = decoded[split].class_names
        if names != first:
            missing, extra = sorted(set(first) - set(names)), sorted(set(names) - set(first))
            raise UsageError(
                f"the {split} folder's classes differ from {order[0]}'s:"
                + (f" it lacks {', '.join(map(repr, missing))}" if missing else "")
                + (f" it has extra {', '.join(map(repr, extra))}" if extra else "")
            )
    return decoded


class ImageFolderDataset(ArrayDataset):
    """Images in folders, decoded in memory. A tree of split folders (train/, val/, test/ of
    class folders) keeps its splits; a plain tree of class folders is split like `preprocess`
    splits it, and `whole()` gives all of its images."""

    def __init__(
        self,
        root: Path,
        image_size=None,
        channels=None,
        val_fraction=0.1,
        test_fraction=0.1,
        seed=0,
    ):
        root = Path(root)
        folders = split_folders(root)
        self._whole = None
        if folders is not None:
            decoded = read_split_folders(folders, image_size, channels)
            splits = {k: (d.images, d.labels) for k, d in decoded.items()}
            failures = [f for d in decoded.values() for f in d.failures]
            first = next(iter(decoded.values()))
            layout = "split folders: " + ", ".join(p.name for p in folders.values())
        else:
            first = read_folder(root, image_size, channels)
            parts = stratified_split(
                first.labels, {"validation": val_fraction, "test": test_fraction}, seed
            )
            splits = {k: (first.images[v], first.labels[v]) for k, v in parts.items()}
            self._whole = (first.images, first.labels)
            failures = first.failures
            layout = "class folders (splits carved out, stratified and seeded)"
        info = DatasetInfo(
            name=root.resolve().name,
            source="folder",
            image_shape=tuple(first.images.shape[1:]),
            class_names=first.class_names,
            splits={k: len(v[1]) for k, v in splits.items()},
            location=str(root.resolve()),
            description=f"images in {layout}, decoded in memory",
            extra={"failures": failures, "layout": layout},
        )
        super().__init__(info, splits)

    def whole(self):
        return self._whole


def find_prepared(path: Path) -> Path | None:
    """The TFDS version directory inside a folder written by `preprocess` (or any TFDS dir)."""
    for candidate in (path, *sorted(path.glob("*")), *sorted(path.glob("*/*"))):
        if candidate.is_dir() and (candidate / "dataset_info.json").is_file():
            return candidate
    return None


class PreparedDataset(Dataset):
    """A TFDS directory on disk, as `tfvision preprocess` writes it."""

    def __init__(self, version_dir: Path):
        from tfvision_cli.data.tfds_source import TfdsDataset
        from tfvision_cli.tf_import import tfds

        builder = tfds().builder_from_directory(str(version_dir))
        self._tfds = TfdsDataset.from_builder(builder, name=str(version_dir))
        root = version_dir.parent.parent
        meta_path = root / METADATA_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        self.info = self._tfds.info
        self.info.name = meta.get("name", builder.name)
        self.info.source = "prepared"
        self.info.location = str(root.resolve())
        self.info.extra.update({k: v for k, v in meta.items() if k in ("pixel_stats", "options")})

    def arrays(self, split: str):
        return self._tfds.arrays(split)
