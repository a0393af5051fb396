"""`tfvision export MODEL --format ...` and `tfvision benchmark MODEL`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.artifacts.formats import FORMATS, QUANTIZATIONS, variants
from tfvision_cli.cli.common import choice, flag, model_argument


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
        choices=QUANTIZATIONS,
        help=f"tflite: {', '.join(QUANTIZATIONS)} (int8 is calibrated on 300 training images).",
    ),
    verify: bool = flag(True, "--verify/--no-verify", help="Run the parity gate."),
    min_agreement: float | None = typer.Option(
        None, "--min-agreement", help="Top-1 agreement needed (default 0.999; int8 0.99)."
    ),
    examples: int = typer.Option(
        1000, "--examples", min=1, max=1_000_000, help="Held-out images to compare."
    ),
    as_json: bool = flag(False, "--json", help="The metadata as JSON on stdout."),
) -> None:
    """Export a trained model and prove it predicts like the Keras model (the parity gate)."""
    from tfvision_cli.artifacts.export import export as do_export
    from tfvision_cli.artifacts.formats import check_options
    from tfvision_cli.artifacts.loaders import load_predictor

    check_options(fmt, quantize)
    if not verify:
        console.warn("--no-verify: the export is NOT checked against the Keras model")
    source = load_predictor(model)
    result = do_export(source, fmt, out, quantize, verify, min_agreement, examples, force=force)
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


def benchmark(
    model: str = model_argument("latest", help="Run directory, latest or a .keras file."),
    formats: str = typer.Option(
        "keras,savedmodel,tflite,tflite-int8,onnx",
        "--formats",
        help=f"Comma-separated, from: {', '.join(variants())}.",
    ),
    runs: int = typer.Option(
        100, "--runs", min=5, max=100_000, help="Timed batch-1 runs per format."
    ),
    warmup: int = typer.Option(10, "--warmup", min=0, max=100_000, help="Untimed runs first."),
    batch: int = typer.Option(256, "--batch", min=1, max=65_536, help="Batch for throughput."),
    as_json: bool = flag(False, "--json", help="JSON list on stdout."),
) -> None:
    """Export to each format (or reuse the exports) and compare size, accuracy and speed."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.serving.benchmark import benchmark as do_benchmark
    from tfvision_cli.serving.benchmark import parse_variants

    variants = parse_variants(formats)
    source = load_predictor(model)
    rows = do_benchmark(
        source,
        variants,
        runs,
        warmup,
        batch,
        on_progress=lambda v: console.log(f"measuring {v} ..."),
    )
    if as_json:
        console.emit_json(rows)
        return
    console.print_table(
        console.table(
            f"Benchmark: {source.path} (test split, {rows[0]['latency_runs']} timed batch-1 runs, "
            f"{warmup} warm-up)",
            ["format", "#size MB", "#accuracy", "#p50 ms", "#p95 ms", f"#images/s @{batch}"],
            [
                [
                    r["variant"],
                    f"{r['size_bytes'] / 1e6:.2f}",
                    f"{r['accuracy']:.4f}",
                    f"{r['latency_ms_p50']:.3f}",
                    f"{r['latency_ms_p95']:.3f}",
                    f"{r['throughput_images_per_s']:,.0f}",
                ]
                for r in rows
            ],
        )
    )
