"""Probabilities a user can act on: calibration measures, temperature scaling, conformal
prediction sets and abstention, checked against independent NumPy computations and through the
real CLI on real MNIST."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from tests.conftest import write_image
from tfvision_cli.evaluation import calibration as cal


def independent_ece(probs, labels, bins=15):
    """ECE and MCE the plain way: each image into the bin (k/bins, (k+1)/bins] of its confidence."""
    conf = probs.max(1)
    right = probs.argmax(1) == labels
    sums = {}
    for c, r in zip(conf, right, strict=True):
        k = max(0, min(bins - 1, math.ceil(c * bins) - 1))
        n, acc, cs = sums.get(k, (0, 0.0, 0.0))
        sums[k] = (n + 1, acc + r, cs + c)
    gaps = {k: abs(acc / n - cs / n) for k, (n, acc, cs) in sums.items()}
    ece = sum(sums[k][0] / len(labels) * gaps[k] for k in gaps)
    return ece, max(gaps.values())


def test_measures_on_hand_checkable_cases():
    # perfectly calibrated: 10 images at confidence 0.8, 8 of them right
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    m = cal.measures(probs, labels)
    assert m["ece"] == pytest.approx(0) and m["mce"] == pytest.approx(0)
    assert m["nll"] == pytest.approx(-(8 * math.log(0.8) + 2 * math.log(0.2)) / 10, abs=1e-6)
    brier = (8 * (0.2**2 + 0.2**2) + 2 * (0.8**2 + 0.8**2)) / 10
    assert m["brier"] == pytest.approx(brier, abs=1e-6)
    assert sum(b["count"] for b in m["bins"]) == 10
    assert sum(1 for b in m["bins"] if b["count"]) == 1  # 14 empty bins, no harm
    # always over-confident: certain, right half the time
    probs = np.tile([1.0, 0.0], (6, 1))
    m = cal.measures(probs, np.array([0, 1] * 3))
    assert m["ece"] == pytest.approx(0.5) and m["mce"] == pytest.approx(0.5)
    assert m["nll"] > 13  # -log of 1e-12 for the wrong half: finite, large


def test_measures_match_an_independent_computation_on_random_arrays():
    rng = np.random.default_rng(3)
    for classes in (2, 10, 100):
        logits = rng.normal(0, 3, size=(2000, classes))
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = rng.integers(0, classes, 2000)
        m = cal.measures(probs, labels)
        ece, mce = independent_ece(probs, labels)
        assert m["ece"] == pytest.approx(ece, abs=2e-6) and m["mce"] == pytest.approx(mce, abs=2e-6)
        nll = np.mean([-math.log(probs[i, y]) for i, y in enumerate(labels)])
        brier = np.mean(
            [np.sum((probs[i] - np.eye(classes)[y]) ** 2) for i, y in enumerate(labels)]
        )
        assert m["nll"] == pytest.approx(nll, abs=2e-6) and m["brier"] == pytest.approx(
            brier, abs=2e-6
        )
        rc = cal.risk_coverage(probs, labels)
        order = np.argsort(-probs.max(1), kind="stable")
        wrong = probs.argmax(1)[order] != labels[order]
        assert rc["aurc"] == pytest.approx(np.mean([wrong[: k + 1].mean() for k in range(2000)]))
        assert rc["accuracy_at_coverage"]["0.5"] == pytest.approx(1 - wrong[:1000].mean(), abs=1e-6)


def over_confident(n: int, classes: int, truth: float, seed: int):
    """Labels drawn from softmax(z / truth), probabilities softmax(z): over-confident by truth."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.5, size=(n, classes))
    honest = np.exp(z / truth) / np.exp(z / truth).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in honest])
    return np.exp(z) / np.exp(z).sum(1, keepdims=True), labels


def test_temperature_fixes_over_confidence_and_never_changes_a_label():
    probs, labels = over_confident(4000, 10, 2.0, seed=0)
    t = cal.fit_temperature(probs[:2000], labels[:2000])
    assert 1.7 < t < 2.3, t  # the over-confidence put in
    after = cal.tempered(probs, t)
    assert np.array_equal(after.argmax(1), probs.argmax(1))
    before_m, after_m = (
        cal.measures(probs[2000:], labels[2000:]),
        cal.measures(after[2000:], labels[2000:]),
    )
    assert after_m["ece"] < before_m["ece"] / 3 and after_m["nll"] < before_m["nll"]
    # a calibrated model is left (about) alone
    honest, labels = over_confident(4000, 10, 1.0, seed=1)
    assert 0.9 < cal.fit_temperature(honest, labels) < 1.1


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_sets_cover_the_true_class(coverage):
    """Exchangeable data from a model that is wrong a third of the time: the sets built on half
    cover the other half's true classes at least as often as asked (less 3 standard errors)."""
    probs, labels = over_confident(6000, 10, 1.5, seed=2)
    scores = cal.aps_scores(probs[:3000], labels[:3000])
    sets = cal.prediction_sets(probs[3000:], cal.quantile(scores, coverage))
    report = cal.set_report(sets, labels[3000:], [str(i) for i in range(10)], coverage)
    se = math.sqrt(coverage * (1 - coverage) / 3000)
    assert report["coverage"] >= coverage - 3 * se, report
    assert report["coverage"] <= coverage + 3 * se + 0.01, report  # close to it, not all
    assert 1 <= report["mean_size"] < 10


def test_too_few_held_out_images_and_bad_levels_are_usage_errors():
    from tfvision_cli.errors import UsageError

    with pytest.raises(UsageError, match="at least 19 calibration images"):
        cal.quantile([0.5] * 10, 0.95)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(UsageError, match="between 0 and 1"):
            cal.check_coverage(bad, "--prediction-set")
    with pytest.raises(UsageError, match="at least 100 held-out images"):
        cal.fit_temperature(np.full((20, 2), 0.5), np.array([0, 1] * 10))
    with pytest.raises(UsageError, match="at least 2 classes"):
        cal.check_held_out(np.zeros(500, int), "calibration")


@pytest.fixture(scope="module")
def calibrated_run(mnist_run, tmp_path_factory):
    """A copy of the session's MNIST run (the original is shared), calibrated by the CLI."""
    from tests.helpers import run, tfvision_cmd

    copy = tmp_path_factory.mktemp("calibrated") / "run"
    shutil.copytree(mnist_run, copy, ignore=shutil.ignore_patterns("exports", "*.png"))
    r = run(tfvision_cmd("calibrate", copy, "--json"))
    assert r.returncode == 0, r.stderr
    return copy, json.loads(r.stdout)


def test_calibrate_stores_a_temperature_that_keeps_labels_and_lowers_nll(calibrated_run, cli):
    run, record = calibrated_run
    stored = json.loads((run / "calibration.json").read_text())
    assert stored["temperature"] == record["temperature"] > 0
    assert 5900 < record["held_out"]["images"] <= 6000  # 10% of train, stratified
    assert "validation" in record["held_out"]["from"]
    assert record["after"]["nll"] <= record["before"]["nll"]
    assert record["after"]["accuracy"] == record["before"]["accuracy"]
    assert len(stored["conformal"]["scores"]) == record["held_out"]["images"]
    r = cli("evaluate", run, "--json", "--no-plots", "--prediction-set", "0.9")
    assert r.exit_code == 0, r.stderr
    calibrated = r.json()
    assert calibrated["calibration"]["temperature"] == record["temperature"]
    s = calibrated["prediction_set"]
    assert s["coverage"] >= 0.9 - 3 * math.sqrt(0.09 / 10_000) and s["mean_size"] < 2
    assert min(s["coverage_per_class"].values()) > 0.8


def test_evaluate_reports_what_predict_confidences_say(calibrated_run, cli, tmp_path, mnist):
    """evaluate's calibration numbers on a folder equal those computed from predict's own
    confidences on the same files (the run's temperature applied in both)."""
    from tfvision_cli.data.catalog import open_dataset, sample

    run, _ = calibrated_run
    images, labels = sample(open_dataset("mnist", data_dir=mnist), "test", 300, seed=4)
    for i, (a, y) in enumerate(zip(images, labels, strict=True)):
        write_image(tmp_path / "data" / str(y) / f"{i:03d}.png", a[..., 0])
    r = cli("evaluate", run, "--dataset", tmp_path / "data", "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    r = cli("predict", run, tmp_path / "data", "--json", "--top-k", "10")
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    probs = np.zeros((len(records), 10))
    for i, rec in enumerate(records):
        for k in rec["top_k"]:
            probs[i, k["label"]] = k["probability"]
    truth = np.array([int(rec["path"].split("/")[-2]) for rec in records])
    ece, _ = independent_ece(probs, truth)
    assert report["calibration"]["ece"] == pytest.approx(ece, abs=1e-4)
    assert report["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == truth))
    r = cli(
        "predict",
        run,
        tmp_path / "data" / "3",
        "--json",
        "--prediction-set",
        "0.95",
        "--min-confidence",
        "0.999",
    )
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(rec["prediction_set_names"][0] == rec["top_k"][0]["class_name"] for rec in records)
    assert all((rec["label"] is None) == rec["abstained"] for rec in records)
    assert any(rec["abstained"] for rec in records) and not all(rec["abstained"] for rec in records)
    assert all(rec["abstained"] == (rec["confidence"] < 0.999) for rec in records)


def test_an_export_bakes_the_temperature_in(calibrated_run, mnist_run, cli, tmp_path):
    run, record = calibrated_run
    r = cli("export", run, "--format", "tflite", "--out", tmp_path / "tfl", "--json")
    assert r.exit_code == 0, r.stderr
    meta = r.json()
    assert meta["calibration"]["temperature"] == record["temperature"]
    assert meta["parity"]["agreement"] >= 0.999  # the gate compared calibrated with calibrated
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.data.catalog import open_dataset, sample

    x, _ = sample(open_dataset("mnist"), "test", 64, seed=5)
    exported = load_predictor(str(tmp_path / "tfl"))
    raw = load_predictor(str(mnist_run))  # the same weights, never calibrated
    expected = cal.tempered(raw.predict(x), record["temperature"])
    np.testing.assert_allclose(exported.predict(x), expected, atol=2e-3)
    r = cli(
        "predict", tmp_path / "tfl", "--prediction-set", "0.9", "--json", *_one_png(tmp_path, x)
    )
    assert r.exit_code == 0 and "prediction_set" in r.stdout  # the scores travel in metadata


def _one_png(tmp_path, x):
    return [write_image(tmp_path / "one.png", x[0][..., 0])]


def test_bad_requests_are_one_line_usage_errors(mnist_run, cli, tmp_path):
    r = cli(
        "predict",
        mnist_run,
        "--prediction-set",
        "1.5",
        *_one_png(tmp_path, np.zeros((1, 28, 28, 1), np.uint8)),
    )
    assert r.exit_code == 2 and "between 0 and 1" in r.stderr
    r = cli("evaluate", mnist_run, "--prediction-set", "0.9", "--no-plots")
    assert r.exit_code == 2 and "tfvision calibrate" in r.stderr
    r = cli("evaluate", mnist_run, "--min-confidence", "0", "--no-plots")
    assert r.exit_code == 2 and "between 0 and 1" in r.stderr
    folder = tmp_path / "few"
    for i in range(30):
        write_image(folder / str(i % 2) / f"{i}.png", np.full((28, 28), 40 * (i % 2), np.uint8))
    copy = tmp_path / "run"
    shutil.copytree(mnist_run, copy, ignore=shutil.ignore_patterns("exports", "*.png"))
    r = cli("calibrate", copy, "--dataset", folder, "--class-map", _map(tmp_path))
    assert r.exit_code == 2 and "at least 100" in r.stderr, r.stderr
    assert not (copy / "calibration.json").exists()
    r = cli("calibrate", copy, "--dataset", "mnist", "--split", "test")
    assert r.exit_code == 2 and "test" in r.stderr
    r = cli("export", mnist_run, "--format", "onnx", "--out", tmp_path / "onnx")
    assert r.exit_code == 0, r.stderr
    r = cli("calibrate", tmp_path / "onnx")
    assert r.exit_code == 2 and "not a run" in r.stderr


def _map(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("'0': '0'\n'1': '1'\n")
    return path
