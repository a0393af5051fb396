"""`tfvision explain MODEL IMAGE...` and `tfvision robustness MODEL`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.analysis.explain import METHODS
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    Json,
    choice,
    examples,
    flag,
    model_argument,
)

EXAMPLES = examples(
    "tfvision explain latest digit.png --method gradcam",
    "ls *.png | tfvision explain latest - --json",
)


@app.command("explain", epilog=EXAMPLES)
def explain(
    model: str = model_argument(..., help="Run (folder, name, latest) or .keras file."),
    inputs: list[str] = typer.Argument(..., help="Image files, folders, or - (paths on stdin)."),
    method: str = choice(
        "auto",
        "--method",
        choices=("auto", *METHODS),
        help="How the map is made. auto: Grad-CAM behind a strided stem (where plain gradients "
        "spread over the image), saliency on stride-1 convolutions and models without feature "
        "maps.",
    ),
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
    as_json: Json = False,
) -> None:
    """Why the model decided: a heatmap per image (.npy at the image's resolution) and an
    overlay picture; saliency (SmoothGrad), integrated gradients or Grad-CAM."""
    from tfvision_cli.analysis.explain import explain_files
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.runs import runs_root
    from tfvision_cli.serving.predict import iter_paths

    predictor = load_predictor(model)
    if method == "auto":
        from tfvision_cli.analysis.explain import default_method, differentiable

        method, why = default_method(differentiable(predictor))
        console.log(f"method: {method} ({why}; --method chooses another)")
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
