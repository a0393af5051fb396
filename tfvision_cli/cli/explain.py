"""`tfvision explain MODEL IMAGE...` and `tfvision robustness MODEL`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.analysis.explain import METHODS
from tfvision_cli.cli.common import CLASS_MAP, choice, dataset_option, flag, model_argument


def explain(
    model: str = model_argument(..., help="Run (folder, name, latest) or .keras file."),
    inputs: list[str] = typer.Argument(..., help="Image files, folders, or - (paths on stdin)."),
    method: str = choice("saliency", "--method", choices=METHODS, help="How the map is made."),
    target: str | None = typer.Option(
        None, "--target", help="Explain this class (name or index) instead of the predicted one."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for heatmaps and overlays (default: explanations/TIME)."
    ),
    steps: int = typer.Option(
        32, "--steps", min=2, max=1024, help="Integrated gradients: points along the path."
    ),
    smooth: int = typer.Option(
        0, "--smooth", min=0, max=256, help="Saliency: SmoothGrad over this many noisy copies."
    ),
    sanity_check: bool = flag(
        False,
        "--sanity-check",
        help="Compare the maps with those of randomised weights (Adebayo et al. 2018).",
    ),
    as_json: bool = flag(False, "--json", help="NDJSON on stdout, one record per image."),
) -> None:
    """Why the model decided: a heatmap per image (.npy at the image's resolution) and an
    overlay picture; saliency (SmoothGrad), integrated gradients or Grad-CAM."""
    from tfvision_cli.analysis.explain import explain_files
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.runs import runs_root
    from tfvision_cli.serving.predict import iter_paths

    predictor = load_predictor(model)
    folder = out or runs_root() / "explanations" / time.strftime("%Y%m%d-%H%M%S")
    paths = list(iter_paths(inputs, sys.stdin))
    failed = 0
    for record in explain_files(predictor, paths, method, folder, target, steps, smooth):
        failed += "error" in record
        if as_json:
            console.emit_ndjson(record)
        elif "error" in record:
            console.warn(record["error"])
        else:
            console.log(
                f"{record['class_name']} {record['confidence']:.2f} " + "{path} -> {png}",
                path=record["path"],
                png=record["overlay"],
            )
    if sanity_check:
        _sanity(predictor, paths, method, steps, smooth, as_json)
    if failed:
        from tfvision_cli.errors import TfvisionError

        raise TfvisionError(f"{failed} of {len(paths)} inputs could not be read")


def _sanity(predictor, paths, method: str, steps: int, smooth: int, as_json: bool) -> None:
    import numpy as np

    from tfvision_cli.analysis.explain import Explainer, differentiable, sanity_check
    from tfvision_cli.data.images import ImageReadError, read_image

    h, w, c = predictor.input_shape
    images = []
    for p in paths:
        try:
            images.append(read_image(p, (h, w), c))
        except ImageReadError:
            continue
        if len(images) == 16:
            break
    if not images:
        return
    images = np.stack(images)
    explainer = Explainer(differentiable(predictor), method, steps, smooth)
    targets = np.asarray(predictor.predict(images)).argmax(1)
    result = sanity_check(explainer, images, targets, explainer.maps(images, targets))
    if as_json:
        console.emit_ndjson({"sanity_check": result, "method": method})
        return
    stages = ", ".join(
        f"{s['randomized_layers_share']:.0%} random: {s['rank_correlation']:.2f}"
        for s in result["stages"]
    )
    verdict = "passed" if result["passed"] else "FAILED: the maps barely depend on the weights"
    console.log(
        f"sanity check ({method}; rank correlation with the maps of randomised "
        f"weights): {stages}; {verdict}"
    )


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
    as_json: bool = flag(False, "--json", help="One JSON object on stdout."),
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
