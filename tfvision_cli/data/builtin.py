"""Datasets shipped inside installed packages: they need no download at all."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from tfvision_cli.data.base import (
    ArrayDataset,
    Dataset,
    DatasetInfo,
    register_dataset,
    stratified_split,
)
from tfvision_cli.errors import DataError


@register_dataset("digits")
def digits() -> Dataset:
    """The UCI 8x8 handwritten digits that scikit-learn ships (1,797 images)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are 0..16: scale to the 0..255 of every other image source.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int64)
    parts = stratified_split(labels, {"test": 0.2}, seed=0)
    splits = {k: (images[v], labels[v]) for k, v in parts.items()}
    info = DatasetInfo(
        name="digits",
        source="builtin",
        image_shape=(8, 8, 1),
        class_names=[str(i) for i in range(10)],
        splits={k: len(v[1]) for k, v in splits.items()},
        location="scikit-learn",
        description="UCI 8x8 handwritten digits from scikit-learn: no download",
    )
    return ArrayDataset(info, splits)


# MNIST's original IDX files, shipped inside the package (CC BY-SA 3.0; data/mnist/README.md):
# the main job's dataset when TFDS has no copy and cannot download one.
PACKAGED_MNIST = Path(__file__).resolve().parent / "mnist"
_IDX = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file (uint8 data): images (N, rows, cols) or labels (N,)."""
    data = gzip.decompress(path.read_bytes())
    magic, dims = int.from_bytes(data[:4], "big"), data[3]
    if magic >> 8 != 0x08 or dims not in (1, 3):
        raise DataError(f"{path} is not an IDX file of uint8 data")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {body.size:,} bytes, not {'x'.join(map(str, shape))}")
    return body.reshape(shape)


def _check_sums(folder: Path) -> None:
    """The packaged files are the ones shipped: a damaged install is an error, not data."""
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            raise DataError(f"{folder / name} is damaged (its SHA-256 differs): reinstall tfvision")


def packaged_mnist(image_size: tuple[int, int] | None = None) -> Dataset:
    """MNIST from the IDX files packaged with tfvision: 60,000 train / 10,000 test, 28x28x1."""
    _check_sums(PACKAGED_MNIST)
    splits = {}
    for split, (images, labels) in _IDX.items():
        x = read_idx(PACKAGED_MNIST / images)[..., None]  # (N, 28, 28, 1) uint8
        if image_size is not None and tuple(image_size) != x.shape[1:3]:
            x = _resized(x, image_size)
        splits[split] = (x, read_idx(PACKAGED_MNIST / labels).astype(np.int64))
    h, w = splits["train"][0].shape[1:3]
    info = DatasetInfo(
        name="mnist",
        source="packaged",
        image_shape=(h, w, 1),
        class_names=[str(i) for i in range(10)],
        splits={k: len(v[1]) for k, v in splits.items()},
        location=str(PACKAGED_MNIST),
        description="MNIST from the IDX files packaged with tfvision (TFDS has no copy and "
        "cannot download one)",
    )
    return ArrayDataset(info, splits)


def _resized(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resized as TFDS datasets are (tf.image.resize, antialiased, rounded)."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    out = tf.image.resize(images, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8).numpy()
