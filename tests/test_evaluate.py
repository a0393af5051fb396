"""`tfvision evaluate`: metrics checked against scikit-learn, reports, pictures."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from tfvision_cli.evaluation.evaluate import classification_report


def test_report_matches_hand_computed_case():
    # 3 classes; true [0,0,1,1,2,2], predicted [0,1,1,1,2,0]
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    probs = np.full((6, 3), 0.1)
    probs[np.arange(6), pred] = 0.8
    r = classification_report(y, probs, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    a, b, c = r["per_class"]
    assert (a["precision"], a["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (b["precision"], b["recall"]) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert (c["precision"], c["recall"]) == (pytest.approx(1.0), pytest.approx(0.5))
    assert b["f1"] == pytest.approx(0.8)
    assert "top5_accuracy" not in r  # 3 classes: top-5 is meaningless
    assert r["top_confusions"][0]["count"] == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, k = 500, 12
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y] * rng.random((n, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = [f"c{i}" for i in range(k)]
    r = classification_report(y, probs, names)
    pred = probs.argmax(1)
    p, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    np.testing.assert_allclose([c["precision"] for c in r["per_class"]], p)
    np.testing.assert_allclose([c["recall"] for c in r["per_class"]], rec)
    np.testing.assert_allclose([c["f1"] for c in r["per_class"]], f1)
    assert [c["support"] for c in r["per_class"]] == sup.tolist()
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        got = r[f"{avg}_avg"]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((ap, ar, af))
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, probs, k=5, labels=range(k))
    )
    assert r["loss"] == pytest.approx(skm.log_loss(y, probs, labels=range(k)), rel=1e-6)
    assert r["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(k)).tolist()


def test_evaluate_latest_json_equals_the_runs_test_accuracy(cli):
    r = cli("train", "digits", "--model", "cnn", "--epochs", "2", "--json")
    run = r.json()["run_dir"]
    metrics = json.loads(Path(run, "metrics.json").read_text())
    r = cli("evaluate", "latest", "--json")
    assert r.exit_code == 0, r.stderr
    d = r.json()
    assert d["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert d["num_examples"] == metrics["test_examples"]
    for key in ("per_class", "macro_avg", "weighted_avg", "confusion_matrix", "top5_accuracy"):
        assert key in d
    assert {"class", "precision", "recall", "f1", "support"} <= set(d["per_class"][0])


def test_evaluate_mnist_run_writes_pictures_and_a_readable_table(cli, mnist_run, tmp_path):
    plots = tmp_path / "plots"
    r = cli("evaluate", mnist_run, "--plots", plots)
    assert r.exit_code == 0, r.stderr
    assert "Confusion matrix" in r.stdout and "largest confusions" in r.stdout
    metrics = json.loads((mnist_run / "metrics.json").read_text())
    assert f"{metrics['test_accuracy']:.4f}" in r.stdout
    for name in ("confusion_matrix.png", "confident_mistakes.png", "training_curves.png"):
        with Image.open(plots / name) as im:
            assert im.width > 400 and im.height > 300


def test_evaluate_on_another_split_and_a_keras_file(cli, mnist_run):
    r = cli(
        "evaluate",
        str(mnist_run / "model.keras"),
        "--dataset",
        "mnist",
        "--split",
        "train",
        "--json",
        "--no-plots",
    )
    assert r.exit_code == 0, r.stderr
    assert r.json()["num_examples"] == 60000 and r.json()["accuracy"] > 0.9


def test_evaluate_rejects_a_dataset_that_does_not_fit(cli, mnist_run, image_folder):
    r = cli("evaluate", mnist_run, "--dataset", "digits", "--json")
    assert r.exit_code == 2
    assert (
        r.stderr.strip().splitlines()[-1]
        == "error: the model takes 28x28 images but digits has 8x8"
    )


def test_evaluate_not_a_run(cli, tmp_path):
    r = cli("evaluate", str(tmp_path))
    assert r.exit_code == 2 and "Traceback" not in r.stderr
