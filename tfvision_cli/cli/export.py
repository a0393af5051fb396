"""`tfvision export MODEL --format ...` and `tfvision benchmark MODEL`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.artifacts.formats import FORMATS, quantizations
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, choice, examples, flag, model_argument

EXAMPLES = examples(
    "tfvision export latest --format tflite --quantize int8",
    "tfvision export latest -f savedmodel --version 1 --out serving/mnist",
)


@app.command("export", epilog=EXAMPLES)
def export(
    model: str = model_argument("latest", help="Run directory, latest or a .keras file."),
    fmt: str = choice(..., "--format", "-f", choices=FORMATS, help="The format to write."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the export (default: <run>/exports/<format>[-<quantize>]). An "
        "existing folder is replaced only if it is a tfvision export, and only with --force.",
    ),
    force: bool = flag(False, "--force", help="Replace an earlier tfvision export."),
    quantize: str = choice(
        "none",
        "--quantize",
        choices=quantizations(),
        help="How the weights are stored ("
        + "; ".join(f"{f.name}: {', '.join(f.quantizations)}" for f in FORMATS.values())
        + "); int8 is calibrated on 300 training images.",
    ),
    verify: bool = flag(True, "--verify/--no-verify", help="Run the parity gate."),
    min_agreement: float | None = typer.Option(
        None, "--min-agreement", help="Top-1 agreement needed (default 0.999; int8 0.99)."
    ),
    examples: int = typer.Option(
        1000, "--examples", min=1, max=1_000_000, help="Held-out images to compare."
    ),
    version: int | None = typer.Option(
        None,
        "--version",
        min=1,
        help="Write OUT/VERSION/ (TF Serving's layout of numbered versions; savedmodel only).",
    ),
    as_json: Json = False,
) -> None:
    """Export a trained model and prove it predicts like the Keras model (the parity gate)."""
    from tfvision_cli.artifacts.export import export as do_export
    from tfvision_cli.artifacts.formats import check_options
    from tfvision_cli.artifacts.loaders import load_predictor

    check_options(fmt, quantize)
    if not verify:
        console.warn("--no-verify: the export is NOT checked against the Keras model")
    source = load_predictor(model)
    result = do_export(
        source, fmt, out, quantize, verify, min_agreement, examples, force=force, version=version
    )
    if as_json:
        console.emit_json({"path": str(result.path), **result.metadata})
        return
    p = result.metadata["parity"]
    if p["verified"]:
        console.log(
            f"parity: {p['agreement']:.2%} top-1 agreement on {p['examples']} held-out images, "
            f"max |Δp| {p['max_abs_diff']:.2g}; accuracy keras {p['keras_accuracy']:.4f}, "
            f"{fmt} {p['export_accuracy']:.4f}"
        )
    console.log(
        "[green]exported[/] {path} " + f"({result.metadata['size_bytes'] / 1e6:.2f} MB)",
        path=result.path,
    )
    typer.echo(str(result.path))
