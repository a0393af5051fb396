"""Whether a model's probabilities mean what they say, and making them so.

- Measures (top-label, as Guo et al. 2017): ECE over 15 equal-width confidence bins
  ((0, 1/15], ..., (14/15, 1]; a confidence of exactly 0 falls in the first), MCE (the worst
  bin's gap), NLL (mean -log p of the true class), Brier (mean squared error of the probability
  vector against the one-hot label, summed over classes). Selective prediction: the risk-coverage
  curve (error rate of the k most confident, for every k) and its area (AURC), the accuracy of
  the most confident 50/80/90%.
- Temperature scaling (Guo et al. 2017): one T > 0 fitted on held-out data by minimising the
  NLL of softmax(log p / T) (SciPy's bounded scalar minimiser, over log T). T > 0 keeps every
  arg-max, so labels and accuracy never change.
- Prediction sets (split conformal prediction, Vovk et al.; Angelopoulos & Bates 2021) with the
  randomised APS score (Romano et al. 2020): a held-out image's score is the total probability
  of the classes ranked above its true class plus u times the true class's own, u uniform in
  (0, 1). For coverage 1 - alpha, q is the ceil((n+1)(1-alpha))-th smallest of the n held-out
  scores; an image's set holds each class, in order of probability, whose own score is at most
  q (never empty). The coverage of the true class is at least 1 - alpha on average over
  exchangeable data, and close to it (the non-randomised variant, which always includes the
  class that crosses q, covers far more than asked with larger sets). u is a hash of the
  image's probabilities, so an image always gets the same set.
"""

from __future__ import annotations

import math

import numpy as np

from tfvision_cli.errors import UsageError

BINS = 15
COVERAGES = (0.5, 0.8, 0.9)
MIN_IMAGES = 100  # a temperature or a conformal quantile from fewer is noise
_TINY = 1e-12


def check_probabilities(probs: np.ndarray) -> None:
    if not np.all(np.isfinite(probs)):
        raise UsageError("the model gives NaN or infinite probabilities: nothing to calibrate")


def measures(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """ece, mce, nll, brier, and the per-bin table the reliability diagram draws."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    table, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if count:
            accuracy, mean_conf = float(correct[inside].mean()), float(confidence[inside].mean())
            gap = abs(accuracy - mean_conf)
            ece += count / len(labels) * gap
            mce = max(mce, gap)
        else:
            accuracy = mean_conf = None
        bin_range = {"low": float(edges[b]), "high": float(edges[b + 1])}
        table.append({**bin_range, "count": count, "accuracy": accuracy, "confidence": mean_conf})
    true_p = probs[np.arange(len(labels)), labels]
    onehot = np.eye(probs.shape[1])[labels]
    return {
        "ece": round(float(ece), 6),
        "mce": round(float(mce), 6),
        "nll": round(float(-np.mean(np.log(np.maximum(true_p, _TINY)))), 6),
        "brier": round(float(np.mean(np.sum((probs - onehot) ** 2, axis=1))), 6),
        "bins": table,
    }


def risk_coverage(probs: np.ndarray, labels: np.ndarray) -> dict:
    """The error rate of the k most confident images for k = 1..n, its area (AURC), and the
    accuracy at COVERAGES."""
    order = np.argsort(-probs.max(axis=1), kind="stable")
    wrong = (probs.argmax(axis=1) != labels)[order]
    n = len(labels)
    risk = np.cumsum(wrong) / np.arange(1, n + 1)
    at = {f"{c:g}": round(float(1 - risk[max(1, math.ceil(c * n)) - 1]), 6) for c in COVERAGES}
    return {"aurc": round(float(risk.mean()), 6), "accuracy_at_coverage": at, "risk": risk}


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the same arg-max, confidences softened (T > 1) or sharpened."""
    logits = np.log(np.maximum(probs.astype(np.float64), _TINY)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar

    check_held_out(labels, "calibration")
    log_p = np.log(np.maximum(probs.astype(np.float64), _TINY))
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        z = log_p / math.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, labels]))

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    t = math.exp(best.x)
    return t if nll(best.x) <= nll(0.0) else 1.0  # never worse than leaving it alone


def check_held_out(labels: np.ndarray, what: str) -> None:
    if len(labels) < MIN_IMAGES:
        raise UsageError(
            f"{what} needs at least {MIN_IMAGES} held-out images, got {len(labels)}",
            hint="give a larger split with --dataset/--split",
        )
    if len(np.unique(labels)) < 2:
        raise UsageError(f"{what} needs held-out images of at least 2 classes, got 1")


def aps_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's conformity score (randomised APS): the total probability of the classes
    ranked above its true class, plus u times the true class's own."""
    rows = np.arange(len(labels))
    true_p = probs[rows, labels][:, None]
    above = np.sum(np.where(probs > true_p, probs, 0.0), axis=1)
    return above + uniform_of(probs) * true_p[:, 0]


def uniform_of(probs: np.ndarray) -> np.ndarray:
    """APS's uniform draw for each image, a hash of its probabilities: the same image always
    gets the same set, and the draw knows nothing of the label."""
    import zlib

    rounded = np.round(np.asarray(probs, np.float64), 6)
    return np.array([(zlib.crc32(row.tobytes()) + 0.5) / 2**32 for row in rounded])


def quantile(scores: list[float] | np.ndarray, coverage: float) -> float:
    check_coverage(coverage, "--prediction-set")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    k = math.ceil((n + 1) * coverage)
    if k > n:
        needed = math.ceil(coverage / (1 - coverage))
        raise UsageError(
            f"a {coverage:g} prediction set needs at least {needed} calibration images "
            f"(this model's calibration has {n})"
        )
    return float(s[k - 1])


def prediction_sets(probs: np.ndarray, q: float) -> list[list[int]]:
    """Classes in order of probability while their score (the total above, plus u times their
    own) stays within q; never empty (the most probable class at least)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    before = np.cumsum(ranked, axis=1) - ranked
    keep = before + uniform_of(probs)[:, None] * ranked <= q + 1e-12
    keep[:, 0] = True
    return [order[i][keep[i]].tolist() for i in range(len(probs))]


def check_coverage(value: float, option: str) -> float:
    if not (isinstance(value, float | int) and 0 < value < 1):
        raise UsageError(f"{option} takes a number between 0 and 1 (exclusive), got {value}")
    return float(value)


def set_report(sets: list[list[int]], labels: np.ndarray, names: list[str], coverage: float):
    covered = np.array([int(y) in s for s, y in zip(sets, labels, strict=True)])
    per_class = {names[c]: round(float(covered[labels == c].mean()), 6) for c in np.unique(labels)}
    return {
        "coverage_target": coverage,
        "coverage": round(float(covered.mean()), 6),
        "mean_size": round(float(np.mean([len(s) for s in sets])), 4),
        "coverage_per_class": per_class,
    }


def abstention_report(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    check_coverage(threshold, "--min-confidence")
    kept = probs.max(axis=1) >= threshold
    right = probs.argmax(axis=1) == labels
    return {
        "min_confidence": threshold,
        "coverage": round(float(kept.mean()), 6),
        "accuracy_of_kept": round(float(right[kept].mean()), 6) if kept.any() else None,
        "abstained": int((~kept).sum()),
    }


def report(probs: np.ndarray, labels: np.ndarray, predictor) -> dict:
    """evaluate's "calibration": the measures, the selective-prediction summary, the bins."""
    m = measures(probs, labels)
    rc = risk_coverage(probs, labels)
    temperature = (predictor.calibration or {}).get("temperature")
    return {k: m[k] for k in ("ece", "mce", "nll", "brier")} | {
        "aurc": rc["aurc"],
        "accuracy_at_coverage": rc["accuracy_at_coverage"],
        "temperature": temperature,
        "bins": m["bins"],
    }


def decisions(
    probs: np.ndarray,
    labels: np.ndarray,
    predictor,
    prediction_set: float | None,
    min_confidence: float | None,
) -> dict:
    """evaluate --prediction-set and --min-confidence: coverage, set sizes, what is kept."""
    out = {}
    if prediction_set is not None:
        q = quantile(conformal_scores(predictor), prediction_set)
        sets = prediction_sets(probs, q)
        out["prediction_set"] = set_report(sets, labels, predictor.class_names, prediction_set)
    if min_confidence is not None:
        out["abstention"] = abstention_report(probs, labels, min_confidence)
    return out


def conformal_scores(predictor) -> list[float]:
    """The held-out scores `tfvision calibrate` stored; prediction sets need them."""
    record = predictor.calibration or {}
    scores = (record.get("conformal") or {}).get("scores")
    if not scores:
        raise UsageError(
            f"{predictor.run_dir or predictor.path} has no calibration: prediction sets need "
            "held-out scores",
            hint="run: tfvision calibrate MODEL (then export again for an export)",
        )
    return scores
