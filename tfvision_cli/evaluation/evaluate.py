"""Classification metrics, the evaluation of a model on a dataset split, and its pictures."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError


def classification_report(
    y_true: np.ndarray, probs: np.ndarray, class_names: list[str], present: list[int] | None = None
) -> dict:
    """Accuracy, top-5, loss, per-class precision/recall/F1/support, averages, confusion matrix.

    present: the classes the data holds (default: all); macro averages are over those, so a
    subset of the model's classes is not averaged with zeros for the classes it lacks."""
    n_classes = len(class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(1)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)  # rows: true class
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    total = max(int(support.sum()), 1)
    p_true = np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0)
    held = np.asarray(range(n_classes) if present is None else present, dtype=np.int64)
    report = {
        "num_examples": int(len(y_true)),
        "accuracy": float(tp.sum() / total),
        "loss": float(-np.mean(np.log(p_true))) if len(y_true) else None,
        "per_class": [
            {
                "class": class_names[i],
                "label": i,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(n_classes)
        ],
        "macro_avg": {
            "precision": float(precision[held].mean()) if len(held) else 0.0,
            "recall": float(recall[held].mean()) if len(held) else 0.0,
            "f1": float(f1[held].mean()) if len(held) else 0.0,
            "support": int(support.sum()),
        },
        "weighted_avg": {
            k: float(np.sum(v * support) / total)
            for k, v in (("precision", precision), ("recall", recall), ("f1", f1))
        }
        | {"support": int(support.sum())},
        "confusion_matrix": cm.tolist(),
        "class_names": list(class_names),
    }
    if n_classes > 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        report["top5_accuracy"] = float(np.mean(np.any(top5 == y_true[:, None], axis=1)))
    report["top_confusions"] = top_confusions(cm, class_names)
    return report


def top_confusions(cm: np.ndarray, class_names: list[str], k: int = 5) -> list[dict]:
    """The k largest off-diagonal cells: which true class is taken for which."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None)[:k]
    out = []
    for flat in order:
        t, p = np.unravel_index(flat, cm.shape)
        if off[t, p] == 0:
            break
        out.append(
            {
                "true": class_names[t],
                "predicted": class_names[p],
                "count": int(off[t, p]),
                "share_of_true": float(off[t, p] / max(cm[t].sum(), 1)),
            }
        )
    return out


def same_dataset(a: str | None, b: str | None) -> bool:
    """Whether two dataset names (or folders) name one dataset."""
    if not a or not b:
        return False
    return a == b or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _check_fits(predictor, info, shape) -> None:
    """The data's images must be the model's input shape (classes are matched by name)."""
    h, w, c = predictor.input_shape
    if tuple(shape) != (h, w, c):
        if shape[-1] != c:
            raise UsageError(
                f"the model takes {c}-channel images but {info.name} has {shape[-1]} channels"
            )
        raise UsageError(
            f"the model takes {h}x{w} images but {info.name} has {shape[0]}x{shape[1]}"
        )


def _stream_of(data, split: str | None, own: bool):
    """(Stream, split name) when the images to evaluate would not fit in memory, else None:
    the split asked for (default test), or every image of someone else's plain folder."""
    from tfvision_cli.data.base import MEMORY_BUDGET

    if split is None and not own and data.is_one_set:
        every = sum(data.decoded_bytes(s) for s in data.info.splits)
        return (data.stream_all(), "all") if every > MEMORY_BUDGET else None
    if split is None:
        split = "test" if "test" in data.info.splits else None
    if split not in data.info.splits or data.decoded_bytes(split) <= MEMORY_BUDGET:
        return None
    return data.stream(split), split


# Streamed evaluations keep the images of this many most confident mistakes (for the picture).
KEPT_MISTAKES = 24


def _predict_stream(predictor, stream, batch_size: int, match):
    """(model labels, probabilities, {index: image} of the most confident mistakes), one batch
    of images in memory at a time."""
    labels, probs, mistakes, seen = [], [], {}, 0
    for x, y in stream.open().batch(batch_size).as_numpy_iterator():
        y, keep = match.labels(y)
        x = x[keep]
        if not len(y):
            continue
        p = predictor.predict(x, batch_size=batch_size)
        wrong = np.flatnonzero(p.argmax(1) != y)
        for i in wrong:
            mistakes[seen + int(i)] = (float(p[i].max()), x[i])
        if len(mistakes) > KEPT_MISTAKES:
            keep = sorted(mistakes, key=lambda k: -mistakes[k][0])[:KEPT_MISTAKES]
            mistakes = {k: mistakes[k] for k in keep}
        labels.append(y)
        probs.append(p)
        seen += len(y)
    if not labels:
        raise UsageError("the split to evaluate holds no readable image")
    kept = {k: image for k, (_, image) in mistakes.items()}
    return np.concatenate(labels), np.concatenate(probs), kept


def _images(data, split: str | None, own: bool):
    """(images, labels, split name): the split asked for; by default the test split, or for a
    plain folder that is not the model's own, every image in it ("all")."""
    info = data.info
    if split is None:
        whole = None if own else data.whole()
        if whole is not None:
            return *whole, "all"
        split = "test" if "test" in info.splits else next(iter(info.splits), "test")
    if split not in info.splits:
        raise UsageError(
            f"dataset {info.name} has no split {split!r} (it has {', '.join(info.splits)})"
        )
    return *data.arrays(split), split


@dataclass
class Evaluation:
    report: dict
    images: np.ndarray | None  # None when the split was streamed (larger than memory)
    labels: np.ndarray
    probs: np.ndarray
    mistakes: dict[int, np.ndarray] | None = None  # streamed: the images of the worst errors


def evaluate(
    predictor,
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 256,
    in_memory: bool = False,
    class_map: Path | None = None,
    prediction_set: float | None = None,
    min_confidence: float | None = None,
) -> Evaluation:
    """Run a model over a dataset (default: the one it was trained on).

    split: None means the test split; but a plain folder of class folders given as `dataset`
    (not the model's own) is evaluated whole: every image in it. A split larger than memory is
    streamed batch by batch (Evaluation.images is then None) unless in_memory (callers that
    need the images: compare, robustness). The data's classes are matched to the model's by
    name (data/classes.py; class_map: a YAML file of deliberate `data_name: model_name` pairs).
    """
    from tfvision_cli.data.catalog import open_dataset
    from tfvision_cli.data.classes import match_classes, read_class_map
    from tfvision_cli.evaluation import calibration

    for option, value in (
        ("--prediction-set", prediction_set),
        ("--min-confidence", min_confidence),
    ):
        if value is not None:
            calibration.check_coverage(value, option)
    if prediction_set is not None:
        calibration.conformal_scores(predictor)  # before minutes of predicting
    name = dataset or predictor.dataset
    if not name:
        raise UsageError("this model does not say which dataset it was trained on: pass --dataset")
    h, w, c = predictor.input_shape
    data = open_dataset(
        name, data_dir=data_dir or predictor.data_dir, image_size=(h, w), channels=c
    )
    info = data.info
    data.require_available()
    own = dataset is None or same_dataset(name, predictor.dataset)
    mapping = read_class_map(class_map)
    match = match_classes(
        info.class_names, predictor.class_names, mapping, what=name, model_named=predictor.named
    )
    streamed = None if in_memory else _stream_of(data, split, own)
    if streamed is not None:  # larger than memory: read and predicted batch by batch
        streamed, split = streamed
        _check_fits(predictor, info, tuple(info.image_shape))
        labels, probs, mistakes = _predict_stream(predictor, streamed, batch_size, match)
        images = None
    else:
        images, labels, split = _images(data, split, own=own)
        _check_fits(predictor, info, images.shape[1:])
        labels, keep = match.labels(labels)
        images = images if keep.all() else images[keep]
        probs = predictor.predict(images, batch_size=batch_size)
        mistakes = None
    if not len(labels):
        raise UsageError(f"{name} holds no image of the classes to evaluate")
    report = classification_report(labels, probs, predictor.class_names, match.present)
    report.update(
        {"model": str(predictor.path), "format": predictor.format, "dataset": name, "split": split}
    )
    report["calibration"] = calibration.report(probs, labels, predictor)
    report.update(calibration.decisions(probs, labels, predictor, prediction_set, min_confidence))
    report["class_match"] = match.to_dict()
    if match.note:
        report["notes"] = [match.note]
    if split == "all":
        report["images_from"] = f"all {len(labels):,} images of {name}"
    else:
        report["images_from"] = f"the {split} split of {name} ({len(labels):,} images)"
    if info.extra.get("failures"):  # a raw folder's unreadable files, each named
        report["skipped_files"] = info.extra["failures"]
    return Evaluation(report, images, labels, probs, mistakes)


def write_plots(evaluation: Evaluation, out_dir: Path, history: Path | None = None) -> list[Path]:
    """Normalised confusion matrix, most confidently wrong images, training curves."""
    from tfvision_cli import plots

    r = evaluation.report
    written = [
        plots.confusion_matrix(
            np.asarray(r["confusion_matrix"]),
            r["class_names"],
            out_dir / "confusion_matrix.png",
            title=f"{r['dataset']} / {r['split']}: accuracy {r['accuracy']:.4f}",
        )
    ]
    pred = evaluation.probs.argmax(1)
    wrong = np.flatnonzero(pred != evaluation.labels)
    if len(wrong):
        conf = evaluation.probs[wrong, pred[wrong]]
        worst = wrong[np.argsort(-conf, kind="stable")[:24]]
        if evaluation.images is not None:
            images = evaluation.images[worst]
        else:  # streamed: the mistakes kept while predicting
            worst = np.asarray(
                sorted(evaluation.mistakes, key=lambda i: -evaluation.probs[i, pred[i]])
            )
            images = np.stack([evaluation.mistakes[i] for i in worst])
        names = r["class_names"]
        titles = [
            f"true {names[evaluation.labels[i]]}\npred {names[pred[i]]} "
            f"{evaluation.probs[i, pred[i]]:.0%}"
            for i in worst
        ]
        written.append(
            plots.image_grid(
                images,
                titles,
                out_dir / "confident_mistakes.png",
                suptitle=f"Most confidently wrong: {len(wrong)} of {r['num_examples']} wrong",
                title_colors=["#b00020"] * len(worst),
            )
        )
    from tfvision_cli.evaluation.calibration import risk_coverage

    curve = risk_coverage(evaluation.probs, evaluation.labels)
    written += [
        plots.reliability_diagram(r["calibration"], out_dir / "reliability_diagram.png"),
        plots.risk_coverage(curve["risk"], curve["aurc"], out_dir / "risk_coverage.png"),
    ]
    if history is not None and history.is_file():
        rows = list(csv.DictReader(history.open()))
        if rows:
            written.append(plots.training_curves(rows, out_dir / "training_curves.png"))
    return written
