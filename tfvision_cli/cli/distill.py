"""`tfvision distill TEACHER --student MODEL [train options]`: knowledge distillation."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.common import dataset_option, flag, model_argument, run_dir_of
from tfvision_cli.cli.complete import complete_models
from tfvision_cli.cli.options import command_signature, config_options, given
from tfvision_cli.compress.distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE

_OWN = [
    (
        "teacher",
        str,
        model_argument(
            ..., help="The teacher: a run (folder, name, latest) or a .keras file (with --dataset)."
        ),
    ),
    (
        "student",
        str,
        typer.Option(
            ..., "--student", help="The student: a registry model.", autocompletion=complete_models
        ),
    ),
    (
        "model_option",
        list[str],
        typer.Option([], "--model-option", help="KEY=VALUE for the student (repeatable)."),
    ),
    (
        "temperature",
        float,
        typer.Option(
            DEFAULT_TEMPERATURE,
            "--temperature",
            min=0.01,
            max=1000,
            help="Softens both models' outputs before they are compared.",
        ),
    ),
    (
        "alpha",
        float,
        typer.Option(
            DEFAULT_ALPHA,
            "--alpha",
            min=0.0,
            max=1.0,
            help="Weight of the labels' loss; the teacher's gets 1 - alpha.",
        ),
    ),
    (
        "dataset",
        str | None,
        dataset_option(
            "--dataset", "-d", help="What to train on (default: the teacher's dataset)."
        ),
    ),
    ("run_dir", Path | None, typer.Option(None, "--run-dir", help="Where the student's run goes.")),
    ("name", str | None, typer.Option(None, "--name", help="Name the student's run.")),
    ("quiet", bool, flag(False, "--quiet", "-q", help="No progress output.")),
    ("as_json", bool, flag(False, "--json", help="One JSON object on stdout at the end.")),
]


def distill(ctx: typer.Context, **values) -> None:
    """Train a small student to imitate a trained teacher (Keras's Distiller, logits
    distillation); the result is an ordinary run of the student, usable without the teacher."""
    from tfvision_cli.cli.common import parse_model_options
    from tfvision_cli.compress.distill import distill as do_distill

    console.set_quiet(values["quiet"])
    overrides = given(ctx, values)
    options = parse_model_options(values["model_option"])
    if options:
        overrides["model_options"] = options
    reporter = console.TrainingReporter()
    try:
        report = do_distill(
            values["teacher"],
            values["student"],
            overrides,
            run_dir_of(values),
            reporter,
            values["temperature"],
            values["alpha"],
            values["dataset"],
        )
    finally:
        reporter.close()
    if values["as_json"]:
        console.emit_json(report)
        return
    m = report["metrics"]
    console.log(
        f"[green]done[/] student test accuracy [bold]{m['test_accuracy']:.4f}[/], "
        f"{m['params']:,} parameters -> " + "{run}",
        run=report["run_dir"],
    )
    typer.echo(report["run_dir"])


distill.__signature__ = command_signature(
    _OWN, ("teacher",), config_options(exclude=("model", "init_from", "pretrained"))
)
