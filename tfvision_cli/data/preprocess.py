"""`tfvision preprocess`: a folder of class folders -> a prepared TFDS dataset on disk."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.data.archives import archive_stem, extract_tree, is_archive
from tfvision_cli.data.base import class_counts, pixel_stats, stratified_split
from tfvision_cli.data.folder import (
    METADATA_FILE,
    FolderImages,
    read_folder,
    read_split_folders,
    split_folders,
)
from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import atomic_dir, check_replaceable

VERSION = "1.0.0"


@dataclass
class PreprocessResult:
    out: Path
    name: str
    image_shape: tuple[int, int, int]
    class_names: list[str]
    splits: dict[str, int]
    class_counts: dict[str, list[int]]
    pixel_stats: dict[str, list[float]]
    failures: list[str]

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        d["image_shape"] = list(self.image_shape)
        return d


def dataset_name(src: Path) -> str:
    """A TFDS-valid name (snake_case, starts with a letter) from the source folder's name."""
    stem = archive_stem(src) if is_archive(src) else src.resolve().name
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"images_{name}".rstrip("_")
    return name


def preprocess(
    src: Path,
    out: Path,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> PreprocessResult:
    """Decode, resize, split (stratified, seeded) and write SRC as a TFDS dataset in OUT.

    SRC is a folder of class folders, or a zip/tar archive of one (extracted safely).
    """
    src, out = Path(src), Path(out)
    for label, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{label} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise UsageError("--val-fraction plus --test-fraction must leave examples for training")
    if not is_archive(src) and not src.is_dir():
        raise UsageError(f"{src} is not a folder (nor a .zip or .tar archive)")
    src_real, out_real = src.resolve(), out.resolve()
    if out_real == src_real or src_real in out_real.parents or out_real in src_real.parents:
        raise UsageError("--out and the source must not contain one another")
    check_replaceable(out, "prepared dataset", overwrite, "--overwrite")
    try:
        # Everything, an extracted archive included, is written under one marked temporary
        # folder beside OUT, renamed into place at the end: OUT is never half-written, and a
        # kill leaves nothing that the next run does not recognise and remove.
        with atomic_dir(out, "prepared dataset", overwrite, "--overwrite") as tmp:
            decoded, given = _decode(src, tmp, image_size, channels, on_progress)
            parts = _parts(decoded, given, val_fraction, test_fraction, seed)
            result = _write(src, out, tmp, decoded, parts, val_fraction, test_fraction, seed)
    except OSError as e:
        raise TfvisionError(f"cannot write {out}: {e.strerror or e}") from None
    return result


def _decode(src: Path, tmp: Path, image_size, channels, on_progress):
    """The images of SRC (a folder, or an archive extracted under tmp) with relative paths, and
    the indices of the splits its folders give (train/, val/, test/), or None."""
    if not is_archive(src):
        return _read_tree(src.resolve(), image_size, channels, on_progress)
    scratch = tmp / ".tfvision-extract"
    scratch.mkdir()
    try:
        root = extract_tree(src, scratch)
        decoded, given = _read_tree(root, image_size, channels, on_progress)
        decoded.failures = [
            f"{src.name}:{f.replace(str(root) + os.sep, '', 1)}" for f in decoded.failures
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return decoded, given


def _read_tree(root: Path, image_size, channels, on_progress):
    folders = split_folders(root)
    if folders is None:
        decoded = read_folder(root, image_size, channels, on_progress)
        decoded.paths = [os.path.relpath(p, root) for p in decoded.paths]
        return decoded, None
    per_split = read_split_folders(folders, image_size, channels, on_progress)
    given, start = {}, 0
    for split, d in per_split.items():
        given[split] = np.arange(start, start + len(d.labels))
        start += len(d.labels)
    first = next(iter(per_split.values()))
    combined = FolderImages(
        images=np.concatenate([d.images for d in per_split.values()]),
        labels=np.concatenate([d.labels for d in per_split.values()]),
        class_names=first.class_names,
        paths=[os.path.relpath(p, root) for d in per_split.values() for p in d.paths],
        failures=[f for d in per_split.values() for f in d.failures],
    )
    return combined, given


def _parts(decoded, given, val_fraction, test_fraction, seed) -> dict[str, np.ndarray]:
    """Split indices: carved out of the whole tree (stratified, seeded), or the split folders'
    own, with validation (and test) carved out of train only where no such folder exists."""
    if given is None:
        return stratified_split(
            decoded.labels, {"validation": val_fraction, "test": test_fraction}, seed
        )
    if "train" not in given:
        return given
    missing = {"validation": val_fraction, "test": test_fraction}
    missing = {k: v for k, v in missing.items() if k not in given and v > 0}
    train = given["train"]
    carved = stratified_split(decoded.labels[train], missing, seed)
    parts = {k: v for k, v in given.items() if k != "train"}
    parts.update({k: train[v] for k, v in carved.items()})
    return {k: parts[k] for k in ("train", "validation", "test") if k in parts}


def _write(src, out, tmp, decoded, parts, val_fraction, test_fraction, seed) -> PreprocessResult:
    name = dataset_name(src)
    shape = tuple(int(d) for d in decoded.images.shape[1:])
    n_classes = len(decoded.class_names)
    result = PreprocessResult(
        out=out,
        name=name,
        image_shape=shape,
        class_names=decoded.class_names,
        splits={k: len(v) for k, v in parts.items()},
        class_counts={k: class_counts(decoded.labels[v], n_classes) for k, v in parts.items()},
        pixel_stats=pixel_stats(decoded.images[parts.get("train", next(iter(parts.values())))]),
        failures=decoded.failures,
    )
    options = {
        "image_size": list(shape[:2]),
        "channels": shape[2],
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "source": str(src.resolve()),
    }
    _write_tfds(tmp, name, decoded, parts, shape)
    meta = {"name": name, **result.to_dict(), "options": options}
    meta.pop("out")
    (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    files = {k: [decoded.paths[i] for i in v] for k, v in parts.items()}
    (tmp / "splits.json").write_text(json.dumps(files, indent=1) + "\n")
    return result


def _write_tfds(data_dir: Path, name: str, decoded, parts, shape) -> None:
    from tfvision_cli.tf_import import tfds as import_tfds

    tfds = import_tfds()
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=decoded.class_names),
        }
    )

    def examples(indices):
        for i in indices:
            yield int(i), {"image": decoded.images[i], "label": int(decoded.labels[i])}

    tfds.disable_progress_bar()
    # TFDS prints "Downloading and preparing dataset ..." on stdout, which is for data only
    with contextlib.redirect_stdout(io.StringIO()):
        tfds.dataset_builders.store_as_tfds_dataset(
            name=name,
            version=VERSION,
            features=features,
            split_datasets={k: examples(v) for k, v in parts.items()},
            data_dir=str(data_dir),
            description="Prepared by `tfvision preprocess`.",
            disable_shuffling=True,
        )
