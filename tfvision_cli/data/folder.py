"""Folders of images: raw class-per-folder trees, and datasets written by `tfvision preprocess`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfvision_cli.data.base import Dataset, DatasetInfo, Stream, stratified_split
from tfvision_cli.data.images import ImageReadError, list_class_folders, read_header, read_image
from tfvision_cli.errors import UsageError

METADATA_FILE = "tfvision.json"
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass
class FolderTree:
    """A class-per-folder tree listed, not decoded: every readable image file with its class,
    the size and channels all are read at, and the splits its folders give."""

    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray  # (N,) int64
    image_size: tuple[int, int]
    channels: int
    given: dict[str, np.ndarray] | None  # indices per split folder; None for a plain tree
    failures: list[str] = field(default_factory=list)  # "path: reason" per unreadable file

    def carve(self, val_fraction: float, test_fraction: float, seed: int) -> dict:
        """Indices per split: the split folders' own, validation and test carved out of train
        (stratified, seeded) where no such folder exists; a plain tree is split whole."""
        if self.given is None:
            return stratified_split(
                self.labels, {"validation": val_fraction, "test": test_fraction}, seed
            )
        if "train" not in self.given:
            return self.given
        missing = {"validation": val_fraction, "test": test_fraction}
        missing = {k: v for k, v in missing.items() if k not in self.given and v > 0}
        train = self.given["train"]
        carved = stratified_split(self.labels[train], missing, seed)
        parts = {k: v for k, v in self.given.items() if k != "train"}
        parts.update({k: train[v] for k, v in carved.items()})
        return {k: parts[k] for k in ("train", "validation", "test") if k in parts}


def _class_files(root: Path) -> tuple[list[str], list[list[Path]]]:
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
    return [name for name, _ in classes], [files for _, files in classes]


def list_tree(root: Path, image_size=None, channels=None) -> FolderTree:
    """List root/<class>/<images> (or root/train|val|test/<class>/<images>) and read every
    file's header once: unreadable files are named and left out, and the size and channels
    not given are the most common size and 'grey if all are' of the first split's images."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    folders = split_folders(root) or {"": root}
    order = sorted(folders, key=lambda k: ("", "train", "validation", "test").index(k))
    names, paths, labels, given = None, [], [], {}
    for split in order:
        split_names, files = _class_files(folders[split])
        if names is None:
            names = split_names
        elif split_names != names:
            _differ(order[0], split, names, split_names)
        start = len(paths)
        for label, class_files in enumerate(files):
            paths += class_files
            labels += [label] * len(class_files)
        given[split] = (start, len(paths))
    headers, failures = [], []
    for path, split in zip(paths, _split_of(given, len(paths)), strict=True):
        try:
            headers.append(read_header(path))
        except ImageReadError as e:
            headers.append(None)
            failures.append(f"{split}: {e}" if split else str(e))
    first = [h for h in headers[: given[order[0]][1]] if h is not None]
    if not first:
        raise UsageError(
            f"no readable image in {folders[order[0]]} ({len(failures)} unreadable files)"
        )
    sizes = Counter((h, w) for h, w, _ in first)
    image_size = tuple(image_size or sizes.most_common(1)[0][0])
    channels = channels or (1 if all(mode in GREY_MODES for _, _, mode in first) else 3)
    keep = np.asarray([h is not None for h in headers], dtype=bool)
    new_index = np.cumsum(keep) - 1
    indices = {k: new_index[a:b][keep[a:b]] for k, (a, b) in given.items()}
    return FolderTree(
        root=root,
        class_names=names,
        paths=[p for p, k in zip(paths, keep, strict=True) if k],
        labels=np.asarray(labels, dtype=np.int64)[keep],
        image_size=image_size,
        channels=channels,
        given=None if "" in given else indices,
        failures=failures,
    )


def _split_of(given: dict[str, tuple[int, int]], n: int) -> list[str]:
    out = [""] * n
    for split, (a, b) in given.items():
        out[a:b] = [split] * (b - a)
    return out


def _differ(first: str, split: str, names: list[str], other: list[str]) -> None:
    missing, extra = sorted(set(names) - set(other)), sorted(set(other) - set(names))
    raise UsageError(
        f"the {split} folder's classes differ from {first}'s:"
        + (f" it lacks {', '.join(map(repr, missing))}" if missing else "")
        + (f" it has extra {', '.join(map(repr, extra))}" if extra else "")
    )


def decode_files(paths, labels, size, channels, failures: list[str], prefix: str = ""):
    """(images, labels) of the files that decode; the others go to failures."""
    images, kept_labels = [], []
    for path, label in zip(paths, labels, strict=True):
        try:
            images.append(read_image(path, size, channels))
            kept_labels.append(label)
        except ImageReadError as e:
            failures.append(f"{prefix}{e}")
    h, w = size
    stacked = np.stack(images) if images else np.zeros((0, h, w, channels), np.uint8)
    return stacked, np.asarray(kept_labels, dtype=np.int64)


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


class ImageFolderDataset(Dataset):
    """Images in folders, listed at once and decoded when used: whole in memory (`arrays`) or
    streamed by tf.data (`stream`), both through read_image, as `predict` reads files. A tree of
    split folders (train/, val/, test/ of class folders) keeps its splits; a plain tree of class
    folders is split like `preprocess` splits it, and `whole()` gives all of its images."""

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
        self.tree = tree = list_tree(root, image_size, channels)
        self.is_one_set = tree.given is None
        if tree.given is not None:
            self.parts = tree.given
            layout = "split folders: " + ", ".join(p.name for p in split_folders(root).values())
        else:
            self.parts = tree.carve(val_fraction, test_fraction, seed)
            layout = "class folders (splits carved out, stratified and seeded)"
        self._decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.info = DatasetInfo(
            name=root.resolve().name,
            source="folder",
            image_shape=(*tree.image_size, tree.channels),
            class_names=tree.class_names,
            splits={k: len(v) for k, v in self.parts.items()},
            location=str(root.resolve()),
            description=f"images in {layout}, decoded when used",
            extra={"failures": tree.failures, "layout": layout},
        )

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._decoded:
            self._decoded[split] = self._decode(self.parts[split], split)
            self.info.splits[split] = len(self._decoded[split][1])
        return self._decoded[split]

    def _decode(self, indices, split: str = ""):
        prefix = f"{split}: " if self.tree.given is not None and split else ""
        return decode_files(
            [self.tree.paths[i] for i in indices],
            self.tree.labels[indices],
            self.tree.image_size,
            self.tree.channels,
            self.info.extra["failures"],
            prefix,
        )

    def whole(self):
        if self.tree.given is not None:
            return None
        return self._decode(np.arange(len(self.tree.paths)))

    def stream_all(self) -> Stream:
        """Every image of a plain folder, streamed (as whole() gives them in memory)."""
        return self._stream_files(np.arange(len(self.tree.paths)))

    def stream(self, split: str, carve: tuple = ()) -> Stream:
        """The split's files decoded by tf.data in parallel as they are used (the paths and
        labels alone in memory); carve (see Dataset): stratified and seeded, as in memory."""
        chosen = self.parts[split]
        for fraction, seed, inside in carve:
            parts = stratified_split(self.tree.labels[chosen], {"carved": fraction}, seed)
            chosen = chosen[parts.get("carved" if inside else "train", np.zeros(0, np.int64))]
        return self._stream_files(chosen)

    def _stream_files(self, indices) -> Stream:
        tree = self.tree
        paths = [str(tree.paths[i]) for i in indices]
        return file_stream(paths, tree.labels[indices], tree.image_size, tree.channels)


def file_stream(paths: list[str], labels: np.ndarray, size, channels) -> Stream:
    """Image files as a Stream: the paths shuffled (all of them, cheaply), then decoded with
    read_image in parallel; a file that fails is skipped and named in stream.skipped."""
    stream = Stream(count=len(paths), files=len(paths), open=None, labels=labels)

    def read(path: bytes):
        try:
            return read_image(path.decode(), size, channels), True
        except ImageReadError as e:
            if str(e) not in stream.skipped:
                stream.skipped.append(str(e))
            return np.zeros((*size, channels), np.uint8), False

    def open_(shuffle: bool = False, seed: int = 0, shard: tuple[int, int] | None = None):
        from tfvision_cli.tf_import import tf as import_tf

        tf = import_tf()
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=object), labels))
        if shard is not None:  # each worker its own files
            ds = ds.shard(shard[1], shard[0])
        if shuffle:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

        def decode(path, label):
            image, ok = tf.numpy_function(read, [path], [tf.uint8, tf.bool], stateful=False)
            image.set_shape((*size, channels))
            return image, label, ok

        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.filter(lambda x, y, ok: ok).map(lambda x, y, ok: (x, y))

    stream.open = open_
    return stream


def find_prepared(path: Path) -> Path | None:
    """The TFDS version directory inside a folder written by `preprocess` (or any TFDS dir)."""
    for candidate in (path, *sorted(path.glob("*")), *sorted(path.glob("*/*"))):
        if candidate.is_dir() and (candidate / "dataset_info.json").is_file():
            return candidate
    return None


class PreparedDataset(Dataset):
    """A TFDS directory on disk, as `tfvision preprocess` writes it."""

    def __init__(self, version_dir: Path):
        from tfvision_cli.data.tfds_source import TfdsDataset, builder_from_folder

        builder = builder_from_folder(version_dir)
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

    def stream(self, split: str, carve: tuple = ()) -> Stream:
        return self._tfds.stream(split, carve)
