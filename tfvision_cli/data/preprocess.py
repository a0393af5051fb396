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
from tfvision_cli.data.base import PixelStats, class_counts
from tfvision_cli.data.folder import METADATA_FILE, list_tree
from tfvision_cli.data.images import ImageReadError, read_image
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
        with (
            atomic_dir(out, "prepared dataset", overwrite, "--overwrite") as tmp,
            _listed(src, tmp, image_size, channels) as (tree, shown),
        ):
            parts = tree.carve(val_fraction, test_fraction, seed)
            options = {
                "image_size": list(tree.image_size),
                "channels": tree.channels,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "seed": seed,
                "source": str(src.resolve()),
            }
            result = _write(src, out, tmp, tree, parts, shown, options, on_progress)
    except OSError as e:
        raise TfvisionError(f"cannot write {out}: {e.strerror or e}") from None
    return result


@contextlib.contextmanager
def _listed(src: Path, tmp: Path, image_size, channels):
    """The tree of SRC (a folder, or an archive extracted under tmp, removed afterwards) and
    how its files are named in failures: (tree, path -> shown name)."""
    if not is_archive(src):
        root = src.resolve()
        yield list_tree(root, image_size, channels), lambda p: os.path.relpath(p, root)
        return
    scratch = tmp / ".tfvision-extract"
    scratch.mkdir()
    try:
        root = extract_tree(src, scratch)
        tree = list_tree(root, image_size, channels)
        tree.failures = [_in_archive(src, root, f) for f in tree.failures]
        yield tree, lambda p: os.path.relpath(p, root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _in_archive(src: Path, root: Path, failure: str) -> str:
    return f"{src.name}:{failure.replace(str(root) + os.sep, '', 1)}"


# Examples per TFRecord shard: about 64 MiB of decoded pixels (at least 256 images), so that
# workers can each read their own files.
SHARD_BYTES = 64 << 20
MIN_SHARD_EXAMPLES = 256


def _write(src, out, tmp, tree, parts, shown, options, on_progress) -> PreprocessResult:
    """Each split's images decoded one at a time and written to TFRecord shards in TFDS's
    layout: memory does not grow with the number of images."""
    from tfvision_cli.tf_import import tfds as import_tfds

    tfds = import_tfds()
    name = dataset_name(src)
    shape = (*tree.image_size, tree.channels)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=shape, dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=tree.class_names),
        }
    )
    version_dir = tmp / name / VERSION
    version_dir.mkdir(parents=True)
    total = sum(len(v) for v in parts.values())
    progress = _Progress(total, on_progress)
    failures = list(tree.failures)
    written, counts, files, stats, infos = {}, {}, {}, PixelStats(tree.channels), []
    for split, indices in parts.items():
        labels, kept, shards, nbytes = _write_split(
            version_dir,
            name,
            split,
            features,
            tree,
            indices,
            shape,
            failures,
            shown,
            progress,
            stats
            if split == "train" or (split == next(iter(parts)) and "train" not in parts)
            else None,
        )
        written[split] = len(labels)
        counts[split] = class_counts(np.asarray(labels, dtype=np.int64), len(tree.class_names))
        files[split] = kept
        infos.append(tfds.core.SplitInfo(name=split, shard_lengths=shards, num_bytes=nbytes))
    with contextlib.redirect_stdout(io.StringIO()):  # stdout is for data only
        tfds.folder_dataset.write_metadata(
            data_dir=version_dir,
            features=features,
            split_infos=infos,
            description="Prepared by `tfvision preprocess`.",
            check_data=False,
        )
    result = PreprocessResult(
        out=out,
        name=name,
        image_shape=shape,
        class_names=tree.class_names,
        splits=written,
        class_counts=counts,
        pixel_stats=stats.result(),
        failures=failures,
    )
    meta = {"name": name, **result.to_dict(), "options": options}
    meta.pop("out")
    (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (tmp / "splits.json").write_text(json.dumps(files, indent=1) + "\n")
    return result


def _write_split(
    version_dir, name, split, features, tree, indices, shape, failures, shown, progress, stats
):
    """One split's shards: (labels written, their files as shown, shard lengths, bytes)."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    per_shard = max(MIN_SHARD_EXAMPLES, SHARD_BYTES // int(np.prod(shape)))
    n_shards = max(1, -(-len(indices) // per_shard))
    labels, kept, lengths, nbytes = [], [], [], 0
    prefix = f"{split}: " if tree.given is not None else ""
    for shard in range(n_shards):
        path = version_dir / f"{name}-{split}.tfrecord-{shard:05d}-of-{n_shards:05d}"
        count = 0
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i in indices[shard * per_shard : (shard + 1) * per_shard]:
                progress.step()
                try:
                    image = read_image(tree.paths[i], tree.image_size, tree.channels)
                except ImageReadError as e:
                    failures.append(f"{prefix}{e}")
                    continue
                label = int(tree.labels[i])
                record = features.serialize_example({"image": image, "label": label})
                writer.write(record)
                nbytes += len(record)
                count += 1
                labels.append(label)
                kept.append(shown(tree.paths[i]))
                if stats is not None:
                    stats.add(image)
        lengths.append(count)
    return labels, kept, lengths, nbytes


class _Progress:
    def __init__(self, total: int, on_progress):
        self.total, self.done, self.on_progress = total, 0, on_progress

    def step(self) -> None:
        self.done += 1
        if self.on_progress:
            self.on_progress(self.done, self.total)
