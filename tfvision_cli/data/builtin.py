"""Datasets shipped inside installed packages: they need no download at all."""

from __future__ import annotations

import numpy as np

from tfvision_cli.data.base import (
    ArrayDataset,
    Dataset,
    DatasetInfo,
    register_dataset,
    stratified_split,
)


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
