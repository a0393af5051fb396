"""Paired statistics for comparing classifiers on the same images (SciPy does the arithmetic).

- wilson(): a 95% interval for one model's accuracy (Wilson score, via `binomtest`).
- mcnemar(): McNemar's test on the discordant pairs (Dietterich 1998: the test with acceptable
  type-I error when each model is trained once and tested on one set). b = baseline right and
  candidate wrong, c = the reverse; exact binomial when b + c < 25, chi-squared with continuity
  correction otherwise, p = 1 when the models never disagree.
- paired_difference(): the candidate's accuracy minus the baseline's with a 95% BCa bootstrap
  interval over images (`scipy.stats.bootstrap(paired=True)`, seeded).
- holm(): Holm's step-down correction for several candidates against one baseline. SciPy has
  Benjamini-Hochberg (`false_discovery_control`) but not Holm, hence these few lines.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05
EXACT_BELOW = 25  # b + c under this: the exact binomial test


def wilson(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar(baseline_right: np.ndarray, candidate_right: np.ndarray) -> dict:
    from scipy.stats import binomtest, chi2

    baseline_right = np.asarray(baseline_right, bool)
    candidate_right = np.asarray(candidate_right, bool)
    b = int(np.sum(baseline_right & ~candidate_right))
    c = int(np.sum(~baseline_right & candidate_right))
    if b + c == 0:
        return {"b": 0, "c": 0, "statistic": None, "p_value": 1.0, "method": "no disagreements"}
    if b + c < EXACT_BELOW:
        p = binomtest(b, b + c, 0.5).pvalue
        return {
            "b": b,
            "c": c,
            "statistic": None,
            "p_value": float(min(p, 1.0)),
            "method": "exact binomial",
        }
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {
        "b": b,
        "c": c,
        "statistic": float(statistic),
        "p_value": float(chi2.sf(statistic, 1)),
        "method": "chi-squared, continuity-corrected",
    }


def _mean_difference(candidate, baseline, axis=-1):
    return np.mean(candidate, axis=axis) - np.mean(baseline, axis=axis)


def paired_difference(
    baseline_right: np.ndarray,
    candidate_right: np.ndarray,
    seed: int = 0,
    resamples: int = 9999,
    confidence: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """(candidate accuracy - baseline accuracy, its BCa bootstrap interval over images)."""
    from scipy.stats import bootstrap

    base = np.asarray(baseline_right, np.float64)
    cand = np.asarray(candidate_right, np.float64)
    difference = float(cand.mean() - base.mean()) if len(base) else 0.0
    if len(base) < 2 or np.all(cand == base):  # no disagreement: no spread to resample
        return difference, (difference, difference)
    result = bootstrap(
        (cand, base),
        _mean_difference,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="BCa",
        batch=200,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa degenerate (nearly constant)
        result = bootstrap(
            (cand, base),
            _mean_difference,
            paired=True,
            vectorized=True,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            batch=200,
            rng=np.random.default_rng(seed),
        )
        low, high = result.confidence_interval
    return difference, (float(low), float(high))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input's order."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return [float(p) for p in adjusted]
