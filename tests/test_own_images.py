"""A user's own images in the layouts they already have (issue 14): split folders, whole-folder
evaluation, imbalance, exports and .keras files as models, starting from a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_image


def _bars(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """Class i is a bright bar at row 2+4i of a noisy 16x16 grey image: learnable in seconds."""
    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            img = rng.integers(0, 40, (16, 16), dtype=np.uint8)
            img[2 + 4 * c : 5 + 4 * c, 2:14] = 230
            write_image(root / name / f"{i}.png", img)
    return root


@pytest.fixture
def split_tree(tmp_path) -> Path:
    root = tmp_path / "photos"
    _bars(root / "Train", {"a": 24, "b": 24, "c": 24}, seed=0)
    _bars(root / "test", {"a": 10, "b": 10, "c": 10}, seed=1)
    return root


def test_split_folders_are_splits_not_classes(cli, split_tree, tmp_path):
    r = cli("data", "info", split_tree, "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()
    assert info["class_names"] == ["a", "b", "c"]  # not ["Train", "test"]
    assert info["splits"] == {"train": 72, "test": 30}
    r = cli(
        "train",
        split_tree,
        "--model",
        "mlp",
        "--epochs",
        "4",
        "--run-dir",
        tmp_path / "run",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    m = r.json()["metrics"]
    assert m["test_examples"] == 30  # the test folder, whole
    assert m["notes"]["validation"].startswith("10% of train")  # carved: no val/ folder
    r = cli("preprocess", split_tree, "--out", tmp_path / "prepared", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["splits"] == {"train": 66, "validation": 6, "test": 30}  # 10% per class


def test_split_folders_must_agree_on_classes(cli, tmp_path):
    root = tmp_path / "photos"
    _bars(root / "train", {"a": 4, "b": 4, "c": 4})
    _bars(root / "val", {"a": 4, "b": 4})
    for command in (("data", "info", root), ("train", root, "--model", "mlp")):
        r = cli(*command)
        assert r.exit_code == 2, r.stderr
        assert "validation folder's classes differ" in r.stderr and "lacks 'c'" in r.stderr


def test_evaluate_reads_every_image_of_the_folder_it_is_given(
    cli, split_tree, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    r = cli("train", split_tree, "--model", "mlp", "--epochs", "4", "--run-dir", run_dir)
    assert r.exit_code == 0, r.stderr
    other = _bars(tmp_path / "more", {"a": 20, "b": 20, "c": 20}, seed=3)  # class folders
    r = cli("evaluate", run_dir, "--dataset", other, "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["num_examples"] == 60 and report["split"] == "all"
    assert report["images_from"] == f"all 60 images of {other}"
    from tfvision_cli.data import base

    with monkeypatch.context() as m:  # as if the folder were larger than memory: streamed
        m.setattr(base, "MEMORY_BUDGET", 1)
        r = cli("evaluate", run_dir, "--dataset", other, "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    for key in ("num_examples", "split", "accuracy", "confusion_matrix", "images_from"):
        assert r.json()[key] == report[key], key
    assert "model: " in r.stderr and str(run_dir) in r.stderr
    # an explicit split still means that split, and the model's own data its test split
    r = cli("evaluate", run_dir, "--dataset", other, "--split", "test", "--json", "--no-plots")
    assert r.json()["num_examples"] == 6
    r = cli("evaluate", run_dir, "--json", "--no-plots")
    assert r.json()["num_examples"] == 30 and r.json()["split"] == "test"


def test_imbalance_is_flagged_and_balanced_weights_are_recorded(cli, tmp_path):
    root = _bars(tmp_path / "skewed", {"common": 60, "rare": 10, "other": 30})
    r = cli("data", "info", root)
    assert r.exit_code == 0
    assert "imbalanced train: class 'common' has 48 examples, 'rare' 8" in r.stderr
    run_dir = tmp_path / "run"
    r = cli(
        "train",
        root,
        "--model",
        "mlp",
        "--epochs",
        "3",
        "--class-weight",
        "balanced",
        "--run-dir",
        run_dir,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    assert "class_weight: balanced" in (run_dir / "config.yaml").read_text()


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    from tfvision_cli.training.data import class_weights

    labels = np.array([0] * 60 + [1] * 10 + [2] * 30)
    ours = class_weights(labels, 3)
    theirs = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert np.allclose([ours[c] for c in range(3)], theirs)


def write_text(path, text: str):
    path.write_text(text)
    return path


def test_exports_and_build_files_are_models_everywhere(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert (
        cli("train", "digits", "--model", "mlp", "--epochs", "2", "--run-dir", run_dir).exit_code
        == 0
    )
    r = cli("export", run_dir, "--format", "tflite")
    assert r.exit_code == 0, r.stderr
    folder = run_dir / "exports" / "tflite"
    image = write_image(tmp_path / "seven.png", np.zeros((8, 8), np.uint8))
    for model in (folder, folder / "model.tflite"):
        r = cli("predict", model, image, "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["class_name"], r.stderr
        r = cli("evaluate", model, "--json", "--no-plots")
        assert r.exit_code == 0 and r.json()["format"] == "tflite", r.stderr
    # --out FILE writes that file, its metadata beside it
    out = tmp_path / "deploy" / "digits.onnx"
    r = cli("export", run_dir, "--format", "onnx", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert out.is_file() and (out.parent / "digits.onnx.json").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["digits.onnx", "digits.onnx.json"]
    r = cli("evaluate", out, "--json", "--no-plots")
    assert r.exit_code == 0 and r.json()["dataset"] == "digits"
    assert cli("export", run_dir, "--format", "onnx", "--out", out).exit_code == 2
    assert cli("export", run_dir, "--format", "onnx", "--out", out, "--force").exit_code == 0
    # one metadata file per artifact: the same base name in two more formats, each its own
    notes = write_text(out.parent / "digits.metadata.json", "a user's notes")
    for suffix in (".tflite", ".keras"):
        fmt = suffix[1:]
        r = cli("export", run_dir, "--format", fmt, "--out", out.with_suffix(suffix))
        assert r.exit_code == 0, r.stderr
    for fmt in ("onnx", "tflite", "keras"):
        artifact = out.with_suffix(f".{fmt}")
        meta = json.loads(artifact.with_name(f"{artifact.name}.json").read_text())
        assert meta["format"] == fmt and meta["artifact"] == artifact.name
        assert meta["parity"]["verified"] and meta["parity"]["agreement"] >= 0.999
        r = cli("evaluate", artifact, "--json", "--no-plots")
        assert r.exit_code == 0 and r.json()["format"] == fmt, r.stderr
    assert notes.read_text() == "a user's notes"
    # a metadata file that tfvision did not write for that artifact is never replaced
    foreign = write_text(out.parent / "other.onnx.json", "{}")
    r = cli("export", run_dir, "--format", "onnx", "--out", out.parent / "other.onnx")
    assert r.exit_code == 2 and "not written by tfvision" in r.stderr
    assert foreign.read_text() == "{}" and not (out.parent / "other.onnx").exists()
    # the .keras file `build` writes trains as it is
    built = tmp_path / "built.keras"
    assert cli("build", "cnn", "--input-shape", "8,8,1", "--out", built).exit_code == 0
    r = cli("train", "digits", "--model", built, "--epochs", "2", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["metrics"]["model"] == str(built) and r.json()["metrics"]["test_accuracy"] > 0.5


def test_predict_notes_every_converted_input(cli, tmp_path, monkeypatch):
    """Each record says what converting its image changed, wherever it sits in the list (not
    only the first), and stderr sums them up; images that needed nothing have no notes."""
    run_dir = tmp_path / "run"
    assert (
        cli("train", "digits", "--model", "mlp", "--epochs", "1", "--run-dir", run_dir).exit_code
        == 0
    )
    folder = tmp_path / "a long folder name that a narrow table would cut" / "inputs"
    plain = np.full((8, 8), 90, np.uint8)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 128
    files = [
        write_image(folder / "a_plain.png", plain),
        write_image(folder / "b_big.png", np.zeros((40, 24), np.uint8)),  # 5x, 3x
        write_image(folder / "c_colour.png", colour),
        write_image(folder / "d_grey_rgb.png", np.stack([plain] * 3, -1)),  # RGB of greys
        write_image(folder / "e_alpha.png", rgba),
        write_image(folder / "f_plain.png", plain),
    ]
    r = cli("predict", run_dir, *files, "--json")
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    notes = {Path(x["path"]).name: x.get("notes", []) for x in records}
    assert notes["a_plain.png"] == notes["d_grey_rgb.png"] == notes["f_plain.png"] == []
    assert notes["b_big.png"] == ["resized from 40x24 to 8x8 (5.0x)"]
    assert notes["c_colour.png"] == ["colour converted to grey"]
    assert notes["e_alpha.png"] == ["transparency flattened onto black"]
    assert "3 of 6 inputs were converted" in " ".join(r.stderr.split())
    assert f"model: {run_dir}" in r.stderr
    # a table at 80 columns keeps the file names that tell the inputs apart
    from rich.console import Console

    from tfvision_cli import console

    monkeypatch.setattr(console, "out", Console(highlight=False, width=80))
    monkeypatch.setattr(console, "stdout_is_terminal", lambda: True)
    r = cli("predict", run_dir, *files)
    assert r.exit_code == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    assert all(f.name in r.stdout for f in files), r.stdout
    assert "…" not in r.stdout


def test_init_from_a_run_keeps_its_weights_and_gives_a_new_head(cli, tmp_path, split_tree):
    base = tmp_path / "base"
    r = cli("train", "digits", "--model", "cnn", "--epochs", "3", "--run-dir", base, "--json")
    assert r.exit_code == 0, r.stderr
    base_accuracy = r.json()["metrics"]["test_accuracy"]
    # same data: every layer is taken; the run's model is used without --model
    r = cli(
        "train",
        "digits",
        "--init-from",
        base,
        "--epochs",
        "1",
        "--learning-rate",
        "0.0003",
        "--run-dir",
        tmp_path / "again",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    m = r.json()["metrics"]
    assert m["model"] == "cnn" and m["notes"]["layers_started_afresh"] == []
    assert m["test_accuracy"] > base_accuracy - 0.05  # started from the trained weights
    # other classes and image size: the convolutions are kept, the head starts afresh
    r = cli(
        "train",
        split_tree,
        "--init-from",
        base,
        "--image-size",
        "8",
        "--epochs",
        "2",
        "--run-dir",
        tmp_path / "other",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    notes = r.json()["metrics"]["notes"]
    assert notes["layers_copied"] >= 2 and notes["layers_started_afresh"] == ["predictions"]
    assert notes["init_from"] == str((base / "model.keras").resolve())
    r = cli("train", "digits", "--init-from", tmp_path / "nowhere")
    assert r.exit_code == 2


def test_freeze_backbone_trains_only_the_head_then_everything(cli, tmp_path):
    from tfvision_cli.models.io import load_model

    base = tmp_path / "base"
    assert (
        cli("train", "digits", "--model", "cnn", "--epochs", "2", "--run-dir", base).exit_code == 0
    )
    frozen = tmp_path / "frozen"
    r = cli(
        "train",
        "digits",
        "--init-from",
        base,
        "--freeze-backbone",
        "2",
        "--epochs",
        "2",
        "--run-dir",
        frozen,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    assert len(r.json()["metrics"]["notes"]["frozen_backbone"]["layers"]) == 2  # the 2 convs
    before, after = load_model(base / "model.keras"), load_model(frozen / "model.keras")
    for old, new in zip(before.layers, after.layers, strict=True):
        same = all(
            np.array_equal(a, b) for a, b in zip(old.get_weights(), new.get_weights(), strict=True)
        )
        assert same == (old.name != "predictions"), old.name  # only the head trained
    # then every layer trains, and history.csv has one row per epoch of both phases
    both = tmp_path / "both"
    r = cli(
        "train",
        "digits",
        "--init-from",
        base,
        "--freeze-backbone",
        "1",
        "--epochs",
        "3",
        "--run-dir",
        both,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    rows = (both / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1", "2"]
    first = [m for m in (before, load_model(both / "model.keras"))]
    convs = [next(layer for layer in m.layers if layer.weights).get_weights()[0] for m in first]
    assert not np.array_equal(*convs)
    assert "Skipping variable loading" not in r.stderr
