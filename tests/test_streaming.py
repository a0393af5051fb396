"""Data of any size (issue 20): folders and prepared datasets streamed from disk, byte for byte
what the in-memory reader gives, sharded by file across workers, preprocess written shard by
shard. The large-data measurements (peak memory at 10k-100k images) are in
benchmarks/large_data.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.test_images import _odd_folder


def _collect(stream, **kw) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in stream.open(**kw).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.stack(images), np.asarray(labels)


def _digests(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(x.tobytes()).hexdigest() for x in images]


def test_a_streamed_folder_gives_exactly_the_arrays_of_the_in_memory_reader(tmp_path, monkeypatch):
    from tfvision_cli.data import images
    from tfvision_cli.data.folder import ImageFolderDataset

    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)  # huge.png is over it

    root, broken = _odd_folder(tmp_path / "odd ü set")
    memory = ImageFolderDataset(root)
    streamed = ImageFolderDataset(root)
    skipped = []
    for split in memory.info.splits:
        images, labels = memory.arrays(split)
        stream = streamed.stream(split)
        s_images, s_labels = _collect(stream)
        assert s_images.dtype == np.uint8 and s_images.shape == images.shape
        assert np.array_equal(s_images, images) and np.array_equal(s_labels, labels), split
        skipped += stream.skipped
    # the one file whose header reads but whose pixels do not is skipped, and named, by both
    assert [Path(f.split(": ")[0]).name for f in skipped] == ["truncated.png"]
    listed = [Path(f.split(": ")[0]).name for f in memory.info.extra["failures"]]
    assert sorted(listed) == sorted(broken)


def test_streamed_files_are_shuffled_each_pass_and_split_disjointly_across_workers(image_folder):
    from tfvision_cli.data.folder import ImageFolderDataset

    stream = ImageFolderDataset(image_folder).stream("train")
    ordered, _ = _collect(stream)
    first, _ = _collect(stream, shuffle=True, seed=1)
    assert sorted(_digests(first)) == sorted(_digests(ordered))
    assert _digests(first) != _digests(ordered)
    workers = [_digests(_collect(stream, shard=(i, 2))[0]) for i in range(2)]
    assert not set(workers[0]) & set(workers[1])
    assert sorted(workers[0] + workers[1]) == sorted(_digests(ordered))


@pytest.fixture
def prepared(tmp_path, monkeypatch) -> Path:
    """A prepared dataset of 300 RGB 32x32 noise images in 3 classes, written in shards of
    about 80 images (the shard size made small to have several)."""
    from tests.conftest import write_image
    from tfvision_cli.data import preprocess

    rng = np.random.default_rng(0)
    for i in range(300):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        write_image(tmp_path / "src" / f"c{i % 3}" / f"{i:03d}.png", image)
    monkeypatch.setattr(preprocess, "SHARD_BYTES", 80 * 32 * 32 * 3)
    monkeypatch.setattr(preprocess, "MIN_SHARD_EXAMPLES", 1)
    preprocess.preprocess(tmp_path / "src", tmp_path / "prepared", val_fraction=0.1)
    return tmp_path / "prepared"


def test_preprocess_writes_shards_that_workers_read_by_file(prepared):
    from tfvision_cli.data.catalog import open_dataset

    dataset = open_dataset(str(prepared))
    version_dir = next(prepared.glob("*/1.0.0"))
    shards = sorted(version_dir.glob("*-train.tfrecord-*"))
    assert len(shards) == 3, shards  # 240 images, 80 a shard
    stream = dataset.stream("train")
    assert stream.count == 240 and stream.files == 3
    whole, labels = _collect(stream)
    images, memory_labels = dataset.arrays("train")  # TFDS interleaves files: another order
    assert sorted(zip(_digests(whole), labels.tolist(), strict=True)) == sorted(
        zip(_digests(images), memory_labels.tolist(), strict=True)
    )
    one, two = (_digests(_collect(stream, shard=(i, 2))[0]) for i in range(2))
    assert not set(one) & set(two) and sorted(one + two) == sorted(_digests(whole))
    # by file: one worker reads two files, the other one (80 images each)
    assert sorted([len(one), len(two)]) == [80, 160]


def test_a_streamed_pipeline_never_embeds_the_images_in_its_graph(prepared):
    from tfvision_cli.config import TrainConfig
    from tfvision_cli.data.catalog import open_dataset
    from tfvision_cli.data.pipeline import make_dataset
    from tfvision_cli.training.data import choose_cache, load_splits

    dataset = open_dataset(str(prepared))
    config = TrainConfig(dataset=str(prepared))
    assert choose_cache(config, dataset, workers=1) == "memory"  # small: held in memory
    assert choose_cache(config, dataset, workers=2) == "none"  # a cluster streams
    splits = load_splits(dataset, config, workers=2)
    assert splits.cache == "none" and splits.shape == (32, 32, 3)
    streamed = make_dataset(splits.train, 3, 16, shuffle=True, shard=(1, 2))
    in_memory = make_dataset(dataset.arrays("train"), 3, 16, shuffle=True)
    data_bytes = 240 * 32 * 32 * 3
    assert len(in_memory._as_serialized_graph().numpy()) > data_bytes  # the arrays are in it
    assert len(streamed._as_serialized_graph().numpy()) < data_bytes / 20  # file names only
    # no autotuning thread: freeing an iterator waited up to its next wake-up (3-17 s lost
    # at the end of an epoch in 1 run of 4, benchmarks/RESULTS.md)
    for ds in (streamed, in_memory, make_dataset(dataset.arrays("test"), 3, 16)):
        assert ds.options().autotune.enabled is False
        assert next(iter(ds))[0].shape[0] == 16  # and it still reads


def test_training_streams_folders_and_prepared_datasets(cli, image_folder, prepared):
    r = cli("train", image_folder, "--model", "mlp", "--epochs", "2", "--cache", "none", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()["metrics"]
    assert m["notes"]["cache"] == "none"
    assert m["epochs_this_session"] == 2 and m["test_examples"] > 0
    # the unreadable files are named, as when decoded in memory: those whose header fails
    # when the folder is listed, and the truncated one when its pixels fail to decode
    skipped = m["notes"]["skipped_files"]
    for name in ("notes.jpg", "empty.png", "truncated.png"):
        assert sum(name in f for f in skipped) == 1, (name, skipped)
    r = cli("train", prepared, "--model", "mlp", "--epochs", "1", "--cache", "disk", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()["metrics"]
    assert m["notes"]["cache"] == "disk" and m["test_examples"] == 30
    assert "validation" in m["notes"]["validation"]


def test_evaluate_and_info_stream_a_split_larger_than_memory_with_the_same_report(
    cli, prepared, tmp_path, monkeypatch
):
    from tfvision_cli.data import base

    r = cli("train", prepared, "--model", "mlp", "--epochs", "2", "--json")
    assert r.exit_code == 0, r.stderr
    run = r.json()["run_dir"]
    r = cli("evaluate", run, "--json", "--plots", tmp_path / "memory")
    assert r.exit_code == 0, r.stderr
    in_memory = r.json()
    info = cli("data", "info", prepared, "--json").json()
    monkeypatch.setattr(base, "MEMORY_BUDGET", 1)  # every split is now "larger than memory"
    monkeypatch.setattr("tfvision_cli.data.catalog.MEMORY_BUDGET", 1)
    streamed_info = cli("data", "info", prepared, "--json").json()
    for key in ("splits", "class_counts_per_split", "pixel_stats"):
        assert streamed_info[key] == info[key], key
    r = cli("evaluate", run, "--json", "--plots", tmp_path / "streamed")
    assert r.exit_code == 0, r.stderr
    streamed = r.json()
    for key in ("accuracy", "num_examples", "confusion_matrix", "split"):
        assert streamed[key] == in_memory[key], key
    assert abs(streamed["loss"] - in_memory["loss"]) < 1e-5
    if in_memory["accuracy"] < 1:  # mistakes: their picture is drawn from the kept images
        assert (tmp_path / "streamed" / "confident_mistakes.png").is_file()
