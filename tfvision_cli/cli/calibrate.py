"""`tfvision calibrate MODEL`: temperature scaling and conformal scores, stored in the run."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    CLASS_MAP,
    Json,
    choice,
    dataset_option,
    examples,
    model_argument,
)

EXAMPLES = examples(
    "tfvision calibrate latest",
    "tfvision calibrate flowers --dataset ./holdout --json",
)


@app.command("calibrate", epilog=EXAMPLES)
def calibrate(
    model: str = model_argument("latest", help="The run (folder, name, latest)."),
    dataset: str | None = dataset_option(
        "--dataset", "-d", help="Held-out data (default: the run's own validation split)."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="The split of --dataset (default: validation; every image of another folder; "
        "never the model's test split).",
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help="TFDS data directory."),
    class_map: Path | None = CLASS_MAP,
    method: str = choice(
        "temperature", "--method", choices=("temperature",), help="How probabilities are fixed."
    ),
    as_json: Json = False,
) -> None:
    """Fit a temperature on held-out data so that confidences mean what they say (labels never
    change); store it, with the scores prediction sets need, in the run's calibration.json.
    Every command and export then uses it."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.evaluation.calibrate import calibrate as do_calibrate

    predictor = load_predictor(model)
    record = do_calibrate(predictor, dataset, split, data_dir, class_map)
    if as_json:
        console.emit_json({k: v for k, v in record.items() if k != "conformal"})
        return
    show(record, predictor.run_dir)


def show(record: dict, run_dir) -> None:
    before, after = record["before"], record["after"]
    rows = [
        [key, f"{before[key]:.4f}", f"{after[key]:.4f}"]
        for key in ("ece", "mce", "nll", "brier", "accuracy")
    ]
    held = record["held_out"]
    console.print_table(
        console.table(
            f"Calibration: temperature {record['temperature']:.4f} on {held['images']:,} "
            "held-out images",
            ["", "#before", "#after"],
            rows,
        )
    )
    console.log("from {what}", what=held["from"])
    console.log("wrote {path}", path=Path(run_dir) / "calibration.json")
