"""`tfvision benchmark MODEL`: size, accuracy and speed of every export format."""

from __future__ import annotations

import typer

from tfvision_cli import console
from tfvision_cli.artifacts.formats import variants
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples, model_argument

EXAMPLES = examples(
    "tfvision benchmark latest",
    "tfvision benchmark latest --formats keras,tflite-int8 --json",
)


@app.command("benchmark", epilog=EXAMPLES)
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
    as_json: Json = False,
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
