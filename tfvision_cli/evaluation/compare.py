"""A/B testing of classifiers: every candidate against a baseline on the same images.

Each model is anything `evaluate` takes. The images are the baseline's evaluation set (its test
split, or --dataset); every model predicts them, and stats.py turns the paired right/wrong
vectors into intervals, McNemar's test (Holm-corrected for several candidates) and a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError
from tfvision_cli.evaluation import stats


@dataclass
class Comparison:
    report: dict
    images: np.ndarray
    labels: np.ndarray
    predictions: list[np.ndarray]  # one per model, the baseline first


def _check_compatible(predictors, names: list[str]) -> None:
    base = predictors[0]
    for spec, p in zip(names[1:], predictors[1:], strict=True):
        if p.input_shape != base.input_shape:
            raise UsageError(
                f"{spec} takes {_shape(p.input_shape)} images but the baseline takes "
                f"{_shape(base.input_shape)}: they cannot be compared on the same images"
            )
        if sorted(p.class_names) != sorted(base.class_names):
            raise UsageError(
                f"{spec} predicts other classes than the baseline "
                f"({_few(p.class_names)} vs {_few(base.class_names)})"
            )


def in_baseline_order(probs: np.ndarray, predictor, baseline) -> np.ndarray:
    """A candidate's probabilities with its columns in the baseline's class order (models with
    the same classes in another order are compared class by class, by name)."""
    column = {n: i for i, n in enumerate(predictor.class_names)}
    return probs[:, [column[n] for n in baseline.class_names]]


def _check_same_dataset(predictors, names: list[str]) -> None:
    """Without --dataset, every model must say it was trained on the baseline's dataset."""
    from tfvision_cli.evaluation.evaluate import same_dataset

    base = predictors[0]
    for spec, p in zip(names[1:], predictors[1:], strict=True):
        if p.dataset and base.dataset and not same_dataset(p.dataset, base.dataset):
            raise UsageError(
                f"dataset mismatch: {spec} was trained on {p.dataset}, the baseline on "
                f"{base.dataset}",
                hint="pass --dataset to compare them on one dataset",
            )


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _few(names) -> str:
    names = list(names)
    return ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")


def compare(
    specs: list[str],
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 256,
    trust: bool = False,
    margin: float | None = None,
    latency_runs: int = 30,
    class_map: Path | None = None,
) -> Comparison:
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.evaluation.calibration import measures
    from tfvision_cli.evaluation.evaluate import classification_report, evaluate

    if len(specs) < 2:
        raise UsageError("compare needs a baseline and at least one candidate")
    predictors = [load_predictor(s, trust=trust) for s in specs]
    _check_compatible(predictors, specs)
    if dataset is None:
        _check_same_dataset(predictors, specs)
    base_eval = evaluate(
        predictors[0], dataset, split, data_dir, batch_size, in_memory=True, class_map=class_map
    )
    images, labels = base_eval.images, base_eval.labels
    class_names = base_eval.report["class_names"]
    reports, predictions = [base_eval.report], [base_eval.probs.argmax(1)]
    present = [i for i, c in enumerate(base_eval.report["per_class"]) if c["support"]]
    for p in predictors[1:]:
        probs = in_baseline_order(p.predict(images, batch_size=batch_size), p, predictors[0])
        reports.append(classification_report(labels, probs, class_names, present))
        reports[-1]["calibration"] = measures(probs, labels)
        predictions.append(probs.argmax(1))
    report = _report(specs, predictors, reports, labels, predictions, margin, images, latency_runs)
    keys = ("dataset", "split", "images_from", "class_names", "class_match")
    report.update({k: base_eval.report[k] for k in keys})
    if base_eval.report.get("notes"):
        report["notes"] = base_eval.report["notes"]
    return Comparison(report, images, labels, predictions)


def _model_block(spec: str, predictor, report: dict, images, latency_runs: int) -> dict:
    correct = int(round(report["accuracy"] * report["num_examples"]))
    return {
        "model": spec,
        "format": predictor.format,
        "accuracy": report["accuracy"],
        "ci95": list(stats.wilson(correct, report["num_examples"])),
        "ece": report["calibration"]["ece"],
        "nll": report["calibration"]["nll"],
        "size_bytes": model_size(predictor.path),
        "latency_ms": batch1_latency_ms(predictor, images, latency_runs),
    }


def _report(specs, predictors, reports, labels, predictions, margin, images, latency_runs):
    right = [pred == labels for pred in predictions]
    base = _model_block(specs[0], predictors[0], reports[0], images, latency_runs)
    candidates = []
    for i in range(1, len(specs)):
        block = _model_block(specs[i], predictors[i], reports[i], images, latency_runs)
        difference, interval = stats.paired_difference(right[0], right[i])
        block.update(
            difference=difference,
            difference_ci95=list(interval),
            mcnemar=stats.mcnemar(right[0], right[i]),
            disagreements=int(np.sum(predictions[0] != predictions[i])),
            per_class=per_class_f1(reports[0], reports[i]),
        )
        if margin is not None:
            block["non_inferior"] = interval[0] >= -margin
        candidates.append(block)
    p_values = [c["mcnemar"]["p_value"] for c in candidates]
    adjusted = stats.holm(p_values) if len(candidates) > 1 else p_values
    for c, p in zip(candidates, adjusted, strict=True):
        c["p_value_holm"] = p if len(candidates) > 1 else None
        c["significant"] = p < stats.ALPHA
        c["verdict"] = verdict(c)
    report = {
        "n": int(len(labels)),
        "baseline": base,
        "candidates": candidates,
        "alpha": stats.ALPHA,
    }
    if margin is not None:
        report["fail_if_worse"] = margin
        report["passed"] = all(c["non_inferior"] for c in candidates)
    if len(candidates) == 1:  # the flat form of an A/B test
        c = candidates[0]
        report["candidate"] = {k: c[k] for k in base}
        for key in ("difference", "difference_ci95", "mcnemar", "significant", "per_class"):
            report[key] = c[key]
    return report


def verdict(c: dict) -> str:
    if not c["significant"]:
        return "not significant"
    return "better" if c["difference"] > 0 else "worse"


def per_class_f1(base: dict, cand: dict) -> list[dict]:
    """Per-class F1 of both models and the change, largest change first."""
    rows = [
        {
            "class": b["class"],
            "f1_baseline": b["f1"],
            "f1_candidate": c["f1"],
            "delta": c["f1"] - b["f1"],
        }
        for b, c in zip(base["per_class"], cand["per_class"], strict=True)
    ]
    return sorted(rows, key=lambda r: -abs(r["delta"]))


def model_size(path: Path) -> int | None:
    """Bytes of a model file, or of every file in a model folder (a SavedModel)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None


def batch1_latency_ms(predictor, images: np.ndarray, runs: int) -> float | None:
    """Median time of one image through the model, after a few warm-up calls."""
    import time

    if runs <= 0 or not len(images):
        return None
    one = images[:1]
    for _ in range(3):
        predictor.predict(one, batch_size=1)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict(one, batch_size=1)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def write_disagreements(comparison: Comparison, out_dir: Path, specs: list[str]) -> list[Path]:
    """For each candidate, a grid of (up to 32) images where it and the baseline disagree: a
    seeded sample with every true class in its share, not the first 32 in file order (one class
    of a folder dataset)."""
    from tfvision_cli import plots
    from tfvision_cli.data.base import stratified_sample

    names = comparison.report.get("class_names") or []
    written = []
    base = comparison.predictions[0]
    for i, pred in enumerate(comparison.predictions[1:], start=1):
        label = comparison.labels
        where = np.flatnonzero(pred != base)
        if not len(where):
            continue
        where = where[stratified_sample(label[where], 32, seed=0)]

        def name(k, names=names):
            return names[k] if k < len(names) else str(k)

        titles = [f"true {name(label[j])}\nA {name(base[j])}\nB {name(pred[j])}" for j in where]
        colors = ["#1b7f3b" if pred[j] == label[j] else "#b00020" for j in where]
        out = out_dir / ("disagreements.png" if len(specs) == 2 else f"disagreements-{i}.png")
        written.append(
            plots.image_grid(
                comparison.images[where],
                titles,
                out,
                title_colors=colors,
                suptitle=f"A = {Path(specs[0]).name}, B = {Path(specs[i]).name}: "
                f"{int(np.sum(pred != base))} disagreements (green: B right)",
            )
        )
    return written
