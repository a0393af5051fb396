"""`tfvision calibrate`'s core: a run's temperature fitted on held-out data (its validation
split unless told) and stored, with the conformal scores prediction sets need, in the run's
calibration.json. The measures and the methods themselves are in calibration.py."""

from __future__ import annotations

import numpy as np

from tfvision_cli.errors import UsageError
from tfvision_cli.evaluation.calibration import (
    aps_scores,
    check_held_out,
    check_probabilities,
    fit_temperature,
    measures,
    tempered,
)


def calibrate(
    predictor,
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    class_map=None,
) -> dict:
    """Fit the run's temperature on held-out data (its validation split unless told), store it
    and the conformal scores in the run's calibration.json; the record (with the measures
    before and after) is returned."""
    from tfvision_cli import __version__
    from tfvision_cli.files import write_json
    from tfvision_cli.runs import RunDir

    if predictor.run_dir is None or predictor.keras_model is None:
        raise UsageError(
            f"{predictor.path} is not a run: calibrate a run (its calibration then goes into "
            "every export made from it)"
        )
    probs, labels, what = _held_out(predictor, dataset, split, data_dir, class_map)
    check_probabilities(probs)
    check_held_out(labels, "calibration")
    old = (predictor.calibration or {}).get("temperature", 1.0)
    raw = tempered(probs, 1.0 / old)  # the model's own probabilities, before any calibration
    t = fit_temperature(raw, labels)
    after = tempered(raw, t)
    record = {
        "method": "temperature",
        "temperature": round(t, 6),
        "held_out": {"images": int(len(labels)), "from": what},
        "before": _summary(raw, labels),
        "after": _summary(after, labels),
        "conformal": {
            "score": "aps",
            "scores": [round(float(s), 6) for s in aps_scores(after, labels)],
        },
        "tfvision_version": __version__,
    }
    write_json(RunDir(predictor.run_dir).calibration, record)
    return record


def _summary(probs: np.ndarray, labels: np.ndarray) -> dict:
    m = measures(probs, labels)
    return {k: m[k] for k in ("ece", "mce", "nll", "brier")} | {
        "accuracy": round(float(np.mean(probs.argmax(1) == labels)), 6)
    }


def _held_out(predictor, dataset, split, data_dir, class_map):
    """(probabilities, labels, where from): the run's validation split, or what was asked."""
    if dataset is not None or split is not None:
        from tfvision_cli.evaluation.evaluate import evaluate, same_dataset

        own = dataset is None or same_dataset(dataset, predictor.dataset)
        if split is None and own:
            split = "validation"  # never the model's test split (else: all of another folder)
        if split == "test":
            raise UsageError(
                "calibrating on the test split would leave no unbiased test: give another split"
            )
        result = evaluate(predictor, dataset, split, data_dir, class_map=class_map)
        return result.probs, result.labels, result.report["images_from"]
    images, labels, what = _validation_of(predictor)
    return predictor.predict(images), labels, what


def _validation_of(predictor):
    from tfvision_cli import config as config_lib
    from tfvision_cli.data.catalog import open_dataset
    from tfvision_cli.runs import RunDir
    from tfvision_cli.training.data import load_splits

    config = config_lib.resolve(None, config_lib.read_yaml(RunDir(predictor.run_dir).config), {})
    h, w, c = predictor.input_shape
    data = open_dataset(config.dataset, data_dir=config.data_dir, image_size=(h, w), channels=c)
    data.require_available()
    splits = load_splits(data, config)
    if splits.val is None:
        raise UsageError(
            "this run kept no validation split (--validation-split 0): give held-out data "
            "with --dataset/--split"
        )
    if isinstance(splits.val, tuple):
        images, labels = splits.val
    else:  # a split larger than memory, streamed: read once
        parts = list(splits.val.open().batch(1024).as_numpy_iterator())
        images = np.concatenate([x for x, _ in parts])
        labels = np.concatenate([y for _, y in parts])
    return images, labels, f"the run's validation split: {splits.notes.get('validation', '')}"
