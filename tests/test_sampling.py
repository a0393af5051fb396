"""Every "N examples" is a seeded sample with every class in its share, and the export's parity
gate fails an export that breaks on one class, whatever the average says."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_image
from tfvision_cli.data.base import stratified_sample
from tfvision_cli.errors import TfvisionError


def test_stratified_sample_holds_every_class_in_its_share():
    labels = np.repeat(np.arange(10), [50, 100, 100, 100, 100, 100, 100, 100, 100, 150])  # sorted
    idx = stratified_sample(labels, 100, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert counts.tolist() == [5, 10, 10, 10, 10, 10, 10, 10, 10, 15]  # proportional
    assert np.array_equal(idx, stratified_sample(labels, 100, seed=0))  # seeded
    assert not np.array_equal(idx, stratified_sample(labels, 100, seed=1))
    # fewer than the classes allow: each class at most once; a tiny class still appears
    rare = np.array([0] * 1000 + [1] * 3 + [2] * 1000)
    assert set(rare[stratified_sample(rare, 10, 0)].tolist()) == {0, 1, 2}
    assert len(stratified_sample(rare, 2, 0)) == 2
    skewed = np.array([0] * 290 + [1] * 5 + [2] * 5)  # shares 2.9, 0.05, 0.05 of 3
    assert sorted(skewed[stratified_sample(skewed, 3, 0)].tolist()) == [0, 1, 2]
    assert np.array_equal(stratified_sample(labels, 10**6, 0), np.arange(len(labels)))


@pytest.mark.parametrize("streamed", [False, True])
def test_a_sample_of_a_sorted_folder_holds_every_class(streamed, tmp_path, monkeypatch):
    from tfvision_cli.data import base
    from tfvision_cli.data.catalog import open_dataset, sample

    for c in range(4):
        for i in range(30):
            write_image(
                tmp_path / "tree" / f"class{c}" / f"{i:03d}.png", np.full((6, 6), c * 60, np.uint8)
            )
    if streamed:  # larger than memory: the sample is streamed, the split never held whole
        monkeypatch.setattr(base, "MEMORY_BUDGET", 1)
        monkeypatch.setattr("tfvision_cli.data.catalog.MEMORY_BUDGET", 1)
    data = open_dataset(str(tmp_path / "tree"), image_size=(6, 6), channels=1)
    split = next(iter(data.info.splits))
    images, labels = sample(data, split, 20, seed=0)
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3] and len(labels) == 20
    assert np.array_equal(images[:, 0, 0, 0], labels * 60)  # each image with its own label


def _predictor(names, fn):
    from tfvision_cli.artifacts.predictor import Predictor

    return Predictor(None, "keras", names, (2, 2, 1), _fn=fn)


def test_the_parity_gate_fails_an_export_broken_on_one_class():
    """The class is written in each image's first pixel; the reference reads it back, the
    'export' does too except for class 3, which it calls 4: 90% agreement overall."""
    from tfvision_cli.artifacts.export import _gate

    names = [str(i) for i in range(10)]
    labels = np.repeat(np.arange(10), 100)
    images = np.zeros((1000, 2, 2, 1), np.uint8)
    images[:, 0, 0, 0] = labels

    def reference(x):
        return np.eye(10, dtype=np.float32)[np.asarray(x)[:, 0, 0, 0]]

    def broken(x):
        label = np.asarray(x)[:, 0, 0, 0].copy()
        label[label == 3] = 4
        return np.eye(10, dtype=np.float32)[label]

    ref, exp = _predictor(names, reference), _predictor(names, broken)
    with pytest.raises(TfvisionError, match=r"0\.00% of the 100 held-out images of class '3'"):
        _gate(ref, exp, (images, labels), "tflite", "int8", min_agreement=0.85)
    parity = _gate(ref, _predictor(names, reference), (images, labels), "onnx", "none", 0.999)
    assert parity["agreement"] == 1.0 and len(parity["per_class"]) == 10
    assert parity["per_class"]["3"] == {"examples": 100, "agreement": 1.0, "disagreements": 0}

    def one_off(x):  # one near-tie (the marked image of class 5): noise, not a broken class
        out = reference(x)
        out[np.asarray(x)[:, 1, 1, 0] == 1] = np.eye(10, dtype=np.float32)[6]
        return out

    images[550, 1, 1, 0] = 1
    parity = _gate(ref, _predictor(names, one_off), (images, labels), "tflite", "int8", 0.99)
    assert parity["per_class"]["5"] == {"examples": 100, "agreement": 0.99, "disagreements": 1}
    images[551:555, 1, 1, 0] = 1  # 5 of class 5's 100: 99.5% overall passes, the class does not
    with pytest.raises(TfvisionError, match="95.00% of the 100 held-out images of class '5'"):
        _gate(ref, _predictor(names, one_off), (images, labels), "tflite", "int8", 0.99)
