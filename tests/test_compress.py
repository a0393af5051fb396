"""Smaller models that keep their accuracy (issue 19): `tfvision prune` and `tfvision distill`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tfvision_cli.compress.prune import masks_for, target_sparsity


def test_the_polynomial_schedule_rises_to_the_target_and_holds():
    values = [target_sparsity(step, 0.8, 100, "polynomial") for step in range(0, 130, 10)]
    assert values[0] == 0 and values[10] == pytest.approx(0.8) and values[-1] == 0.8
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))  # never falls
    assert values[5] == pytest.approx(0.8 * (1 - 0.5**3))  # Zhu & Gupta's cubic
    assert target_sparsity(0, 0.8, 100, "constant") == 0.8


def test_layer_and_global_masks_zero_the_smallest_weights():
    rng = np.random.default_rng(0)
    small = rng.normal(0, 1.0, (3, 3, 1, 8))  # 72 large weights
    big = rng.normal(0, 0.1, (400, 10))  # 4,000 small ones
    layer = masks_for([small, big], 0.8, "layer")
    assert [round(1 - m.mean(), 3) for m in layer] == [0.806, 0.8]  # 58 of 72: 57.6 rounded
    kept = np.abs(big)[layer[1]]
    assert kept.min() >= np.abs(big)[~layer[1]].max()  # the largest stay
    glob = masks_for([small, big], 0.8, "global")
    zeros = sum((~m).sum() for m in glob)
    assert zeros == round(0.8 * (small.size + big.size))
    assert glob[0].mean() > 0.8 and glob[1].mean() < 0.2  # the small, large-valued layer kept


def test_prune_zeroes_the_asked_share_of_every_kernel_and_exports_through_the_gate(
    cli, mnist_run, tmp_path
):
    from tfvision_cli.compress.prune import prunable_kernels
    from tfvision_cli.models.io import load_model

    out = tmp_path / "pruned"
    r = cli(
        "prune",
        mnist_run,
        "--sparsity",
        "0.8",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "60",
        "--quantize",
        "int8",
        "--run-dir",
        out,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    report = r.json()
    model = load_model(out / "model.keras")  # safe mode: an ordinary model, no wrapper layers
    kernels = [np.asarray(kernel.numpy()) for kernel in prunable_kernels(model)]
    zeros = sum(int(np.sum(k == 0)) for k in kernels)
    assert zeros / sum(k.size for k in kernels) == pytest.approx(0.8, abs=1e-4)  # global scope
    assert [layer["sparsity"] for layer in report["sparsity"]["layers"]] == [
        float(np.mean(k == 0)) for k in kernels
    ]
    assert report["sparsity"]["overall"] == pytest.approx(0.8, abs=1e-4)
    assert report["test_accuracy_after"] > 0.9  # 120 steps; the accuracy target: benchmarks
    sizes = report["sizes"]
    # zeros compress (model.keras also holds the optimizer's dense moments: measured 0.76x)
    assert sizes["keras_after_gzip"] < sizes["keras_before_gzip"] * 0.85
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pruning"]["sparsity"] == pytest.approx(0.8, abs=0.001)
    # --quantize int8 went through export's parity gate (a failed gate exits 1 above)
    int8 = Path(sizes["tflite_int8_path"])
    parity = json.loads((int8.parent / "metadata.json").read_text())["parity"]
    assert int8.is_file() and parity["verified"] is True and parity["agreement"] >= 0.99
    assert sizes["tflite_int8_after_gzip"] < sizes["tflite_float_before_gzip"] / 3
    # like for like: the source's own int8 export against the pruned one (zeros compress)
    assert sizes["tflite_int8_after_gzip"] < sizes["tflite_int8_before_gzip"] * 0.9, sizes
    state = cli("runs", "show", out, "--json").json()["state"]
    assert state["kind"] == "prune" and state["parent"] == str(mnist_run)


@pytest.mark.parametrize(
    "args, message",
    [(["--sparsity", "1.5"], "--sparsity"), (["--pruning-schedule", "cubic"], "cubic")],
)
def test_bad_pruning_options_are_usage_errors(cli, tmp_path, args, message):
    r = cli("prune", tmp_path / "nothing", *args)
    assert r.exit_code == 2 and message in r.stderr


def test_distill_teaches_a_student_that_stands_alone(cli, tmp_path):
    from tfvision_cli.models.io import load_model

    teacher = tmp_path / "teacher"
    r = cli("train", "digits", "--model", "cnn", "--epochs", "3", "--run-dir", teacher, "-q")
    assert r.exit_code == 0, r.stderr
    student = tmp_path / "student"
    r = cli(
        "distill",
        teacher,
        "--student",
        "mlp",
        "--epochs",
        "2",
        "--temperature",
        "4",
        "--alpha",
        "0.3",
        "--run-dir",
        student,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    metrics = r.json()["metrics"]
    # the teacher-and-student table's figures, measured on both models
    sizes = r.json()["comparison"]
    teacher_metrics = json.loads((teacher / "metrics.json").read_text())
    assert sizes["teacher"]["params"] == teacher_metrics["params"]
    assert sizes["student"]["params"] == metrics["params"] < sizes["teacher"]["params"]
    assert sizes["student"]["test_accuracy"] == metrics["test_accuracy"]
    assert sizes["teacher"]["test_accuracy"] == teacher_metrics["test_accuracy"]
    assert sizes["student"]["bytes"] == (student / "model.keras").stat().st_size
    assert 0 < sizes["student"]["flops"] < sizes["teacher"]["flops"]
    assert "not smaller than its teacher" not in r.stderr
    assert metrics["distillation"]["temperature"] == 4 and metrics["distillation"]["alpha"] == 0.3
    rows = list(csv.DictReader((student / "history.csv").open()))
    assert len(rows) == 2 and all(float(row["distillation_loss"]) > 0.01 for row in rows)
    model = load_model(student / "model.keras")  # the student alone, without its teacher
    assert model.count_params() == metrics["params"]
    assert not any("distiller" in layer.name for layer in model.layers)
    r = cli("evaluate", student, "--no-plots", "--json")
    assert r.exit_code == 0 and r.json()["accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )
    r = cli("distill", teacher, "--student", "no-such-model", "--run-dir", tmp_path / "x")
    assert r.exit_code == 2 and "unknown model" in r.stderr
    # a student as large as its teacher: warned before training, and in the table
    r = cli("distill", teacher, "--student", "cnn", "--epochs", "1", "--run-dir", tmp_path / "y")
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.splitlines()
    warned = [i for i, line in enumerate(lines) if "is not smaller than its teacher" in line]
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1"))
    assert len(warned) == 2 and warned[0] < first_epoch, r.stderr
    assert "Teacher" in r.stdout and "parameters" in r.stdout and "1x" in r.stdout
