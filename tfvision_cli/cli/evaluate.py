"""`tfvision evaluate MODEL [--dataset NAME|DIR] [--split test]`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    CLASS_MAP,
    MIN_CONFIDENCE,
    PREDICTION_SET,
    TRUST_MODEL,
    Json,
    dataset_option,
    examples,
    flag,
    model_argument,
)

EXAMPLES = examples(
    "tfvision evaluate latest",
    "tfvision evaluate flowers --dataset ./holdout --class-map names.yaml --json",
)


@app.command("evaluate", epilog=EXAMPLES)
def evaluate(
    model: str = model_argument("latest", help="Run directory, latest, .keras or an export."),
    dataset: str | None = dataset_option(
        "--dataset", "-d", help="Dataset name or folder (default: the model's own)."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Split to evaluate on. Default: test; for a folder of class folders given with "
        "--dataset, every image in it.",
    ),
    data_dir: str | None = typer.Option(None, "--data-dir", help="TFDS data directory."),
    class_map: Path | None = CLASS_MAP,
    batch_size: int = typer.Option(
        256, "--batch-size", min=1, max=65_536, help="Images per batch."
    ),
    plots: Path | None = typer.Option(
        None, "--plots", help="Folder for the pictures (default: the run directory)."
    ),
    no_plots: bool = flag(False, "--no-plots", help="Write no pictures."),
    prediction_set: float | None = PREDICTION_SET,
    min_confidence: float | None = MIN_CONFIDENCE,
    trust_model: bool = TRUST_MODEL,
    as_json: Json = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix, and pictures of the mistakes."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.evaluation.evaluate import evaluate as do_evaluate
    from tfvision_cli.evaluation.evaluate import write_plots
    from tfvision_cli.runs import RunDir

    if trust_model:
        console.warn("--trust-model: a SavedModel's ops are not checked before they run")
    predictor = load_predictor(model, trust=trust_model)
    console.log(
        "model: {path} " + f"({predictor.format}, {len(predictor.class_names)} classes)",
        path=predictor.run_dir or predictor.path,
    )
    result = do_evaluate(
        predictor,
        dataset,
        split,
        data_dir,
        batch_size,
        class_map=class_map,
        prediction_set=prediction_set,
        min_confidence=min_confidence,
    )
    report = result.report
    for note in report.get("notes", []):
        console.warn(note)
    for failure in report.get("skipped_files", []):
        console.warn(f"skipped {failure}")
    out_dir = plots or predictor.run_dir
    if not no_plots and out_dir is not None:
        history = RunDir(predictor.run_dir).history if predictor.run_dir else None
        report["plots"] = [str(p) for p in write_plots(result, Path(out_dir), history)]
    if as_json:
        console.emit_json(report)
        return
    _print_report(report)


def _calibration_rows(r: dict) -> list[list[str]]:
    c = r["calibration"]
    t = c.get("temperature")
    at = ", ".join(f"{float(k):.0%}: {v:.4f}" for k, v in c["accuracy_at_coverage"].items())
    rows = [
        ["calibration", f"temperature {t:.4g}" if t else "none (tfvision calibrate fits one)"],
        ["ECE / MCE", f"{c['ece']:.4f} / {c['mce']:.4f}"],
        ["NLL / Brier", f"{c['nll']:.4f} / {c['brier']:.4f}"],
        ["AURC", f"{c['aurc']:.4f} (accuracy of the most confident {at})"],
    ]
    if "prediction_set" in r:
        s = r["prediction_set"]
        rows.append(
            [
                f"{s['coverage_target']:g} prediction sets",
                f"coverage {s['coverage']:.4f}, mean size {s['mean_size']:.2f}",
            ]
        )
    if "abstention" in r:
        a = r["abstention"]
        kept = f"{a['accuracy_of_kept']:.4f}" if a["accuracy_of_kept"] is not None else "-"
        rows.append(
            [
                f"confidence >= {a['min_confidence']:g}",
                f"answers {a['coverage']:.2%} ({a['abstained']:,} abstained), accuracy {kept}",
            ]
        )
    return rows


def _print_report(r: dict) -> None:
    names = r["class_names"]
    absent = set(r["class_match"]["absent_from_data"])
    shown = [i for i, n in enumerate(names) if n not in absent]  # the classes the data holds
    head = [
        ["model", f"{r['model']} ({r['format']})"],
        ["data", r["images_from"]],
        ["examples", f"{r['num_examples']:,}"],
        ["accuracy", f"{r['accuracy']:.4f}"],
    ]
    match = r["class_match"]
    if match["by"] != "names" or match["classes_present"] < match["model_classes"]:
        head.insert(
            3,
            [
                "classes",
                f"{match['classes_present']} of the model's "
                f"{match['model_classes']}, matched by {match['by']}",
            ],
        )
    if "top5_accuracy" in r:
        head.append(["top-5 accuracy", f"{r['top5_accuracy']:.4f}"])
    if r.get("loss") is not None:
        head.append(["loss", f"{r['loss']:.4f}"])
    head += _calibration_rows(r)
    console.print_table(console.table("Evaluation", ["", ""], head, show_header=False))
    rows = [
        [
            c["class"],
            f"{c['precision']:.4f}",
            f"{c['recall']:.4f}",
            f"{c['f1']:.4f}",
            f"{c['support']:,}",
        ]
        for c in r["per_class"]
        if c["class"] not in absent
    ]
    for label, avg in (("macro avg", r["macro_avg"]), ("weighted avg", r["weighted_avg"])):
        rows.append(
            [
                label,
                f"{avg['precision']:.4f}",
                f"{avg['recall']:.4f}",
                f"{avg['f1']:.4f}",
                f"{avg['support']:,}",
            ]
        )
    console.print_table(
        console.table("Per class", ["class", "#precision", "#recall", "#f1", "#support"], rows)
    )
    if len(names) <= 20:
        cm = r["confusion_matrix"]
        columns, legend = _matrix_columns(names, cm)
        t = console.table(
            "Confusion matrix (rows: true, columns: predicted)",
            ["true", *(f"#{c}" for c in columns)],
            [],
        )
        for i in shown:
            row = cm[i]
            t.add_row(
                console.cell(names[i]),
                *(
                    console.cell(v, "bold")
                    if i == j
                    else console.cell(v or "·", "" if v else "dim")
                    for j, v in enumerate(row)
                ),
            )
        console.print_table(t)
        if legend:
            console.out.print(console.safe(legend))
    if r["top_confusions"]:
        worst = ", ".join(
            f"{c['true']} → {c['predicted']} ({c['count']})" for c in r["top_confusions"]
        )
        console.out.print(f"largest confusions: {console.safe(worst)}")
    for p in r.get("plots", []):
        console.log("wrote {path}", path=p)


def _matrix_columns(names: list[str], cm: list[list[int]]) -> tuple[list[str], str | None]:
    """The confusion matrix's column headers: the class names when the table fits the
    terminal whole, else their indices with a legend (a name is never cut to `5_s…`)."""
    digits = len(f"{max((max(row) for row in cm), default=0):,}")
    row_label = max(map(len, names), default=0) + 4
    whole = row_label + sum(max(len(n), digits) + 3 for n in names)
    if whole <= console.out.width:
        return list(names), None
    legend = "columns: " + ", ".join(f"{i} = {n}" for i, n in enumerate(names))
    return [str(i) for i in range(len(names))], legend
