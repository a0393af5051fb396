"""`tfvision prune MODEL --sparsity 0.8 [train options]`: magnitude pruning while fine-tuning."""

from __future__ import annotations

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    Json,
    Name,
    Quiet,
    RunDir,
    choice,
    examples,
    model_argument,
    run_dir_of,
)
from tfvision_cli.cli.options import takes_config
from tfvision_cli.compress.prune import SCHEDULES, SCOPES

EXAMPLES = examples(
    "tfvision prune latest --sparsity 0.8",
    "tfvision prune latest --sparsity 0.5 --quantize int8 --json",
)


@app.command("prune", epilog=EXAMPLES)
@takes_config(exclude=("model", "init_from", "pretrained"))
def prune(
    ctx: typer.Context,
    source: str = model_argument(..., help="The run to prune (folder, name or latest)."),
    *,
    sparsity: float = typer.Option(
        0.8,
        "--sparsity",
        min=0.01,
        max=0.99,
        help="Fraction of every Conv/Dense kernel's weights set to zero.",
    ),
    pruning_schedule: str = choice(
        "polynomial",
        "--pruning-schedule",
        choices=SCHEDULES,
        help="polynomial: rise to the sparsity over the first half of the "
        "epochs (Zhu & Gupta 2017); constant: from the first step.",
    ),
    scope: str = choice(
        "global",
        "--scope",
        choices=SCOPES,
        help="global: one magnitude threshold for all kernels, the sparsity "
        "overall (small, sensitive layers keep more); layer: the sparsity in "
        "every kernel (as TF-MOT).",
    ),
    quantize: str | None = choice(
        None,
        "--quantize",
        choices=("int8", "float16", "dynamic"),
        help="Also export the pruned model as a quantized .tflite "
        "(through the parity gate) and report its size.",
    ),
    run_dir: RunDir = None,
    name: Name = None,
    quiet: Quiet = False,
    as_json: Json = False,
    flags: dict,
) -> None:
    """Prune a trained model: fine-tune it (2 epochs at a tenth of its learning rate unless
    told) while its smallest weights are masked to zero; the result is an ordinary run whose
    model.keras holds exact zeros. Reports sparsity per layer, accuracy and sizes (gzipped)."""
    from tfvision_cli.compress.prune import prune as do_prune

    console.set_quiet(quiet)
    reporter = console.TrainingReporter()
    try:
        report = do_prune(
            source,
            sparsity,
            pruning_schedule,
            flags,
            run_dir_of(run_dir, name),
            reporter,
            quantize,
            scope,
        )
    finally:
        reporter.close()
    if as_json:
        console.emit_json(report)
        return
    _print(report)


def _change(before: int, after: int) -> str:
    return f"{before:,} -> {after:,} B ({after / before:.2f}x)"


def _print(r: dict) -> None:
    s, sizes = r["sparsity"], r["sizes"]
    rows = [
        ["pruned run", r["run_dir"]],
        ["sparsity", f"{s['overall']:.3f} ({s['pruned_weights']:,} of {s['weights']:,} weights)"],
        ["test accuracy", f"{r['test_accuracy_before']:.4f} -> {r['test_accuracy_after']:.4f}"],
        ["model.keras, gzipped", _change(sizes["keras_before_gzip"], sizes["keras_after_gzip"])],
    ]
    paths = [k for k in sizes if k.startswith("tflite_") and k.endswith("_path")]
    quantized = paths[0].removeprefix("tflite_").removesuffix("_path") if paths else None
    if quantized:  # like for like: the same export of the source and of the pruned model
        before, after = (
            sizes[f"tflite_{quantized}_before_gzip"],
            sizes[f"tflite_{quantized}_after_gzip"],
        )
        rows += [
            [f"{quantized} .tflite, gzipped", _change(before, after)],
            ["float .tflite before, gzipped", f"{sizes['tflite_float_before_gzip']:,} B"],
        ]
    console.print_table(console.table("Pruning", ["", ""], rows, show_header=False))
    if quantized:
        console.log("wrote {path}", path=sizes[f"tflite_{quantized}_path"])
    layers = [[x["kernel"], f"{x['size']:,}", f"{x['sparsity']:.3f}"] for x in s["layers"]]
    console.print_table(console.table("Per layer", ["kernel", "#weights", "#sparsity"], layers))
