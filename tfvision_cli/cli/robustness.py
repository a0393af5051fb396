"""`tfvision robustness MODEL`: accuracy under attacks and corruptions."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    CLASS_MAP,
    Json,
    dataset_option,
    examples,
    model_argument,
)

EXAMPLES = examples(
    "tfvision robustness latest --limit 1000",
    "tfvision robustness latest --attack pgd --eps 0,0.1 --json",
)


@app.command("robustness", epilog=EXAMPLES)
def robustness(
    model: str = model_argument("latest", help="Run (folder, name, latest) or .keras file."),
    attack: str = typer.Option("fgsm,pgd", "--attack", help="Attacks, comma-separated: fgsm, pgd."),
    eps: str = typer.Option(
        "0,0.05,0.1,0.2,0.3",
        "--eps",
        help="L-inf budgets as shares of the pixel range (0.3 = 76 of 255), comma-separated.",
    ),
    steps: int = typer.Option(10, "--steps", min=1, max=1000, help="PGD steps."),
    corruptions: str = typer.Option(
        "gaussian_noise,gaussian_blur,contrast,rotation,jpeg",
        "--corruptions",
        help="Corruptions (severities 1-5 each), comma-separated; '' for none.",
    ),
    dataset: str | None = dataset_option("--dataset", "-d", help="Default: the model's own."),
    class_map: Path | None = CLASS_MAP,
    limit: int | None = typer.Option(
        None,
        "--limit",
        min=1,
        help="Use N test images (attacks cost time): a seeded sample with every class in its "
        "share.",
    ),
    plots: Path | None = typer.Option(
        None, "--plots", help="Folder for robustness.png (default: the run directory)."
    ),
    as_json: Json = False,
) -> None:
    """Accuracy under FGSM and PGD attacks and under common corruptions, with a curve."""
    from tfvision_cli.analysis.robustness import ATTACKS, CORRUPTIONS, parse_eps, parse_list
    from tfvision_cli.analysis.robustness import robustness as measure
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.evaluation.evaluate import evaluate as do_evaluate
    from tfvision_cli.plots import robustness as draw
    from tfvision_cli.runs import runs_root

    attacks = parse_list(attack, ATTACKS, "attack")
    kinds = parse_list(corruptions, CORRUPTIONS, "corruption")
    budgets = parse_eps(eps)
    predictor = load_predictor(model)
    data = do_evaluate(predictor, dataset, in_memory=True, class_map=class_map)
    images, labels = data.images, data.labels
    if limit is not None:
        from tfvision_cli.data.base import stratified_sample

        keep = stratified_sample(labels, limit, seed=0)
        images, labels = images[keep], labels[keep]

    def progress(row: dict) -> None:
        what = (
            f"{row['attack']} eps {row['eps']:g}"
            if "attack" in row
            else f"{row['name']} severity {row['severity']}"
        )
        console.log(f"{what}: accuracy {row['accuracy']:.4f}")

    report = measure(
        predictor, images, labels, attacks, budgets, steps, kinds, on_progress=progress
    )
    report["images_from"] = data.report["images_from"]
    out = plots or predictor.run_dir or runs_root() / "robustness"
    report["plot"] = str(draw(report, Path(out) / "robustness.png"))
    if as_json:
        console.emit_json(report)
        return
    rows = [
        [a["attack"], f"{a['eps']:g}", a["steps"], f"{a['accuracy']:.4f}"]
        for a in report["attacks"]
    ]
    console.print_table(
        console.table(
            f"Attacks on {report['n']:,} images (clean accuracy {report['clean_accuracy']:.4f})",
            ["attack", "#eps", "#steps", "#accuracy"],
            rows,
        )
    )
    if report.get("random_noise"):
        rows = [
            ["random noise", f"{r['eps']:g}", 1, f"{r['accuracy']:.4f}"]
            for r in report["random_noise"]
        ]
        console.print_table(
            console.table(
                "Random signs of the same budget (an attack must do better)",
                ["", "#eps", "#draws", "#accuracy"],
                rows,
            )
        )
    for warning in report.get("warnings", []):
        console.warn(warning)
    names = sorted({c["name"] for c in report["corruptions"]})
    rows = [
        [n, *(f"{c['accuracy']:.3f}" for c in report["corruptions"] if c["name"] == n)]
        for n in names
    ]
    if rows:
        columns = ["corruption", "#1", "#2", "#3", "#4", "#5"]
        console.print_table(console.table("Corruptions by severity", columns, rows))
    console.log("wrote {path}", path=report["plot"])
