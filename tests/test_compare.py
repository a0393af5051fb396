"""`tfvision compare` (issue 17): paired statistics checked against independent computations, and
the command on real runs and exports."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2, norm

from tests.conftest import write_image
from tfvision_cli.evaluation import stats

# -- the statistics, against the textbook formulas -----------------------------------------


def _pairs(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Right/wrong vectors with b images only the baseline gets right, c only the candidate."""
    base = np.array([1] * b + [0] * c + [1] * both + [0] * neither, bool)
    cand = np.array([0] * b + [1] * c + [1] * both + [0] * neither, bool)
    return base, cand


def test_mcnemar_never_disagreeing_is_p_one():
    base, cand = _pairs(0, 0, 90, 10)
    m = stats.mcnemar(base, cand)
    assert (m["b"], m["c"], m["p_value"]) == (0, 0, 1.0)


@pytest.mark.parametrize("b, c", [(7, 1), (3, 9), (12, 12), (0, 5)])
def test_mcnemar_exact_below_25_discordant_pairs(b, c):
    m = stats.mcnemar(*_pairs(b, c, 50, 5))
    n, k = b + c, min(b, c)
    exact = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)  # two-sided
    assert m["method"] == "exact binomial" and (m["b"], m["c"]) == (b, c)
    assert m["p_value"] == pytest.approx(exact, rel=1e-9)


def test_mcnemar_chi_squared_with_continuity_correction_from_25_pairs():
    m = stats.mcnemar(*_pairs(40, 20, 900, 40))
    assert m["method"].startswith("chi-squared")
    statistic = (abs(40 - 20) - 1) ** 2 / 60
    assert m["statistic"] == pytest.approx(statistic)
    assert m["p_value"] == pytest.approx(chi2.sf(statistic, 1))
    assert m["p_value"] == pytest.approx(0.01417, abs=1e-4)  # the textbook value


def test_wilson_interval_matches_its_formula():
    k, n, z = 930, 1000, norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = stats.wilson(k, n)
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)


def test_paired_bootstrap_interval_is_seeded_and_as_wide_as_the_normal_one():
    base, cand = _pairs(60, 30, 880, 30)
    n = len(base)
    difference, (low, high) = stats.paired_difference(base, cand)
    assert difference == pytest.approx((30 - 60) / n)
    assert low < difference < high < 0  # the candidate is worse
    se = math.sqrt((60 + 30) / n**2 - (30 - 60) ** 2 / n**3)  # the paired difference's s.e.
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert stats.paired_difference(base, cand) == (difference, (low, high))  # seeded
    assert stats.paired_difference(base, base) == (0.0, (0.0, 0.0))


def test_holm_step_down():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])


# -- the command on real runs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory) -> dict[str, Path]:
    """A trained and a barely trained mlp on digits (the baseline's own test split: 359)."""
    from typer.testing import CliRunner

    from tfvision_cli.cli import app

    root = tmp_path_factory.mktemp("compare")
    runs = {"strong": root / "strong", "weak": root / "weak"}
    for name, extra in (
        ("strong", ["--epochs", "4"]),
        ("weak", ["--epochs", "1", "--steps-per-epoch", "1", "--learning-rate", "0.0001"]),
    ):
        args = ["train", "digits", "--model", "mlp", *extra, "--run-dir", str(runs[name]), "-q"]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
    return runs


def test_a_model_against_itself_shows_no_difference(cli, digits_runs):
    strong = digits_runs["strong"]
    r = cli("compare", strong, strong, "--fail-if-worse", "0", "--no-plots", "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["mcnemar"] == {
        "b": 0,
        "c": 0,
        "statistic": None,
        "p_value": 1.0,
        "method": "no disagreements",
    }
    assert report["difference"] == 0 and report["difference_ci95"] == [0, 0]
    assert not report["significant"] and report["passed"]
    assert report["n"] == 359 and report["baseline"]["accuracy"] == report["candidate"]["accuracy"]


def test_a_strong_and_a_weak_model_differ_significantly(cli, digits_runs):
    strong, weak = digits_runs["strong"], digits_runs["weak"]
    r = cli("compare", strong, weak, "--no-plots", "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    m, n = report["mcnemar"], report["n"]
    # the discordant pairs account for the accuracies, and p follows from them
    assert (m["c"] - m["b"]) / n == pytest.approx(report["difference"], abs=1e-9)
    diff = report["candidate"]["accuracy"] - report["baseline"]["accuracy"]
    assert diff == pytest.approx(report["difference"], abs=1e-9)
    assert m["p_value"] == pytest.approx(
        chi2.sf((abs(m["b"] - m["c"]) - 1) ** 2 / (m["b"] + m["c"]), 1)
    )
    assert report["significant"] and m["p_value"] < 0.001
    assert report["candidates"][0]["verdict"] == "worse"
    low, high = report["difference_ci95"]
    assert low <= report["difference"] <= high < 0
    deltas = [abs(c["delta"]) for c in report["per_class"]]
    assert deltas == sorted(deltas, reverse=True) and len(deltas) == 10
    for block in (report["baseline"], report["candidate"]):
        assert block["ci95"][0] <= block["accuracy"] <= block["ci95"][1]
        assert block["size_bytes"] > 0 and block["latency_ms"] > 0


def test_fail_if_worse_is_a_ci_gate_both_ways(cli, digits_runs, tmp_path):
    strong, weak = digits_runs["strong"], digits_runs["weak"]
    r = cli("compare", strong, weak, "--fail-if-worse", "0.005", "--plots", tmp_path)
    assert r.exit_code == 1
    assert "may be worse than the baseline by more than 0.005" in r.stderr
    assert r.stderr.count("error:") == 1 and "FAILED" in r.stdout
    assert (tmp_path / "disagreements.png").stat().st_size > 0
    r = cli("compare", weak, strong, "--fail-if-worse", "0.005", "--no-plots", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["passed"] and r.json()["candidates"][0]["verdict"] == "better"


def test_several_candidates_are_holm_corrected(cli, digits_runs):
    strong, weak = digits_runs["strong"], digits_runs["weak"]
    r = cli("compare", strong, weak, strong, "--no-plots", "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert "candidate" not in report and len(report["candidates"]) == 2
    raw = [c["mcnemar"]["p_value"] for c in report["candidates"]]
    assert [c["p_value_holm"] for c in report["candidates"]] == pytest.approx(stats.holm(raw))
    assert [c["verdict"] for c in report["candidates"]] == ["worse", "not significant"]


def test_models_of_other_datasets_are_a_usage_error(cli, digits_runs, tmp_path):
    rng = np.random.default_rng(0)
    for c in range(10):  # a folder dataset of 8x8 images with ten classes, like digits
        for i in range(6):
            write_image(
                tmp_path / "imgs" / str(c) / f"{i}.png", rng.integers(0, 255, (8, 8), np.uint8)
            )
    other = tmp_path / "other"
    r = cli("train", tmp_path / "imgs", "--model", "mlp", "--epochs", "1", "--run-dir", other, "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("compare", digits_runs["strong"], other, "--no-plots")
    assert r.exit_code == 2 and "dataset mismatch" in r.stderr and "--dataset" in r.stderr
    assert r.stderr.count("error:") == 1
    r = cli("compare", digits_runs["strong"], "--no-plots")
    assert r.exit_code == 2 and "at least one candidate" in r.stderr


def test_a_float_model_against_its_int8_export(cli, mnist_run, tmp_path):
    int8 = tmp_path / "model-int8.tflite"
    r = cli("export", mnist_run, "--format", "tflite", "--quantize", "int8", "--out", int8)
    assert r.exit_code == 0, r.stderr
    r = cli("compare", mnist_run, int8, "--fail-if-worse", "0.005", "--no-plots", "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["n"] == 10_000 and report["candidate"]["format"] == "tflite"
    assert not report["significant"] and report["passed"]
    assert report["candidate"]["size_bytes"] < report["baseline"]["size_bytes"] / 2
