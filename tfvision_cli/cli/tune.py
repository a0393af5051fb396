"""`tfvision tune DATASET --space space.yaml [train options fixed for every trial]`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, choice, examples, flag
from tfvision_cli.cli.complete import complete_datasets
from tfvision_cli.cli.options import takes_config
from tfvision_cli.training.tune import METRICS, PRUNERS, SAMPLERS

EXAMPLES = examples(
    "tfvision tune mnist --space space.yaml --trials 20 --epochs 3",
    "tfvision tune --resume --study-dir saved_models/tune-mnist-20261204-101500",
)


@app.command("tune", epilog=EXAMPLES)
@takes_config()
def tune(
    ctx: typer.Context,
    dataset: str | None = typer.Argument(
        None,
        help="What every trial trains on (as `train`). Not needed with --resume.",
        autocompletion=complete_datasets,
        show_default=False,
    ),
    *,
    space: Path | None = typer.Option(
        None,
        "--space",
        help="YAML: each option to a list of choices or to {low, high, log, step}.",
    ),
    sampler: str = choice("tpe", "--sampler", choices=SAMPLERS, help="How trials are chosen."),
    trials: int | None = typer.Option(
        None,
        "--trials",
        min=1,
        max=100_000,
        help="Trials in the study, all processes together (default 20; grid: every combination).",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Stop starting trials after this many seconds."
    ),
    pruner: str = choice(
        "none",
        "--pruner",
        choices=PRUNERS,
        help="Stop hopeless trials from their epochs' validation accuracy.",
    ),
    metric: str = choice(
        "val_accuracy",
        "--metric",
        choices=METRICS,
        help="What trials are ranked by (never the test split).",
    ),
    study_dir: Path | None = typer.Option(
        None,
        "--study-dir",
        help="The study's folder (default: saved_models/tune-DATASET-TIME).",
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="An Optuna storage URL (postgresql://...) shared by machines."
    ),
    resume: bool = flag(False, "--resume", help="Continue the study in --study-dir."),
    as_json: Json = False,
    flags: dict,
) -> None:
    """Search hyperparameters with Optuna; every trial is an ordinary run in the study folder."""
    from tfvision_cli.training.tune import new_study, resumed_study, run_study, study_folder

    if resume:
        study = resumed_study(study_dir, trials, storage)
    else:
        study = new_study(dataset, space, flags, sampler, pruner, metric, trials, storage)
        study_dir = study_folder(study, study_dir)
    console.log(
        f"study: {study.trials} trials, {study.sampler} sampler, {study.pruner} pruner -> "
        + "{dir}",
        dir=study_dir,
    )

    def on_trial(row: dict) -> None:
        value = f"{row['value']:.4f}" if row["value"] is not None else "-"
        console.log(
            f"trial {row['number']} {row['state']}: {study.metric} {value} " + "{p}",
            p=str(row["params"]),
        )

    report = run_study(study_dir, study, on_trial, timeout)
    if as_json:
        console.emit_json(report)
        return
    _print(report, study.metric)


def _print(report: dict, metric: str) -> None:
    rows = sorted(report["trials"], key=lambda t: (t["value"] is None, -(t["value"] or 0)))
    names = sorted({k for t in rows for k in t["params"]})
    console.print_table(
        console.table(
            f"Study {report['study_dir']}: {len(rows)} trials",
            ["#trial", "state", f"#{metric}", *names],
            [
                [
                    t["number"],
                    t["state"],
                    f"{t['value']:.4f}" if t["value"] is not None else "",
                    *(_short(t["params"].get(n)) for n in names),
                ]
                for t in rows[:20]
            ],
        )
    )
    best = report["best"]
    if best:
        console.log(
            f"best: trial {best['number']}, {metric} {best['value']:.4f}, test accuracy "
            f"{best['test_accuracy']} -> " + "{dir}/best.yaml",
            dir=report["study_dir"],
        )


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
