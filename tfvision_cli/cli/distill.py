"""`tfvision distill TEACHER --student MODEL [train options]`: knowledge distillation."""

from __future__ import annotations

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    Json,
    ModelOption,
    Name,
    Quiet,
    RunDir,
    dataset_option,
    examples,
    model_argument,
    run_dir_of,
)
from tfvision_cli.cli.complete import complete_models
from tfvision_cli.cli.options import takes_config
from tfvision_cli.compress.distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE

EXAMPLES = examples(
    "tfvision distill teacher-run --student fastnet",
    "tfvision distill teacher-run --student mlp --temperature 2 --alpha 0.3",
)


@app.command("distill", epilog=EXAMPLES)
@takes_config(exclude=("model", "init_from", "pretrained"))
def distill(
    ctx: typer.Context,
    teacher: str = model_argument(
        ..., help="The teacher: a run (folder, name, latest) or a .keras file (with --dataset)."
    ),
    *,
    student: str = typer.Option(
        ..., "--student", help="The student: a registry model.", autocompletion=complete_models
    ),
    model_option: ModelOption = None,
    temperature: float = typer.Option(
        DEFAULT_TEMPERATURE,
        "--temperature",
        min=0.01,
        max=1000,
        help="Softens both models' outputs before they are compared: 1 never lost accuracy on "
        "MNIST; 2-4 gains more for a student with room (benchmarks/RESULTS.md).",
    ),
    alpha: float = typer.Option(
        DEFAULT_ALPHA,
        "--alpha",
        min=0.0,
        max=1.0,
        help="Weight of the labels' loss; the teacher's gets 1 - alpha.",
    ),
    dataset: str | None = dataset_option(
        "--dataset", "-d", help="What to train on (default: the teacher's dataset)."
    ),
    run_dir: RunDir = None,
    name: Name = None,
    quiet: Quiet = False,
    as_json: Json = False,
    flags: dict,
) -> None:
    """Train a small student to imitate a trained teacher (Keras's Distiller, logits
    distillation); the result is an ordinary run of the student, usable without the teacher."""
    from tfvision_cli.cli.common import parse_model_options
    from tfvision_cli.compress.distill import distill as do_distill

    console.set_quiet(quiet)
    overrides = flags
    options = parse_model_options(model_option)
    if options:
        overrides["model_options"] = options
    reporter = console.TrainingReporter()
    try:
        report = do_distill(
            teacher,
            student,
            overrides,
            run_dir_of(run_dir, name),
            reporter,
            temperature,
            alpha,
            dataset,
        )
    finally:
        reporter.close()
    if as_json:
        console.emit_json(report)
        return
    _table(report["comparison"], teacher, student)
    m = report["metrics"]
    console.log(
        f"[green]done[/] student test accuracy [bold]{m['test_accuracy']:.4f}[/], "
        f"{m['params']:,} parameters -> " + "{run}",
        run=report["run_dir"],
    )
    typer.echo(report["run_dir"])


def _table(sizes: dict, teacher: str, student: str) -> None:
    """Teacher against student: parameters, FLOPs per image, file size, test accuracy."""

    def row(label: str, key: str, fmt) -> list:
        t, s = sizes["teacher"][key], sizes["student"][key]
        ratio = f"{s / t:.3g}x" if isinstance(t, int | float) and t and s is not None else ""
        return [label, fmt(t) if t is not None else "-", fmt(s) if s is not None else "-", ratio]

    def mflops(v):
        return f"{v / 1e6:,.2f} M"

    rows = [
        row("parameters", "params", lambda v: f"{v:,}"),
        row("FLOPs per image", "flops", mflops),
        row("file size", "bytes", lambda v: f"{v / 2**20:,.2f} MB"),
        row("test accuracy", "test_accuracy", lambda v: f"{v:.4f}"),
    ]
    console.print_table(
        console.table(
            f"Teacher {teacher} and student {student}",
            ["", "#teacher", "#student", "#student/teacher"],
            rows,
        )
    )
    if sizes["student"]["params"] >= sizes["teacher"]["params"]:
        from tfvision_cli.compress.distill import not_smaller

        console.warn(not_smaller(student, sizes))
