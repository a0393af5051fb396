"""`tfvision tune DATASET --space space.yaml [train options fixed for every trial]`."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.common import choice, flag
from tfvision_cli.cli.complete import complete_datasets
from tfvision_cli.cli.options import command_signature, config_options, given
from tfvision_cli.training.tune import METRICS, PRUNERS, SAMPLERS

_OWN = [
    (
        "dataset",
        str | None,
        typer.Argument(
            None,
            help="What every trial trains on (as `train`). Not needed with --resume.",
            autocompletion=complete_datasets,
            show_default=False,
        ),
    ),
    (
        "space",
        Path | None,
        typer.Option(
            None,
            "--space",
            help="YAML: each option to a list of choices or to {low, high, log, step}.",
        ),
    ),
    ("sampler", str, choice("tpe", "--sampler", choices=SAMPLERS, help="How trials are chosen.")),
    (
        "trials",
        int | None,
        typer.Option(
            None,
            "--trials",
            min=1,
            max=100_000,
            help="Trials in the study, all processes together (default 20; grid: every "
            "combination).",
        ),
    ),
    (
        "timeout",
        float | None,
        typer.Option(
            None, "--timeout", min=1, help="Stop starting trials after this many seconds."
        ),
    ),
    (
        "pruner",
        str,
        choice(
            "none",
            "--pruner",
            choices=PRUNERS,
            help="Stop hopeless trials from their epochs' validation accuracy.",
        ),
    ),
    (
        "metric",
        str,
        choice(
            "val_accuracy",
            "--metric",
            choices=METRICS,
            help="What trials are ranked by (never the test split).",
        ),
    ),
    (
        "study_dir",
        Path | None,
        typer.Option(
            None,
            "--study-dir",
            help="The study's folder (default: saved_models/tune-DATASET-TIME).",
        ),
    ),
    (
        "storage",
        str | None,
        typer.Option(
            None, "--storage", help="An Optuna storage URL (postgresql://...) shared by machines."
        ),
    ),
    ("resume", bool, flag(False, "--resume", help="Continue the study in --study-dir.")),
    ("as_json", bool, flag(False, "--json", help="The study as JSON on stdout at the end.")),
]


def tune(ctx: typer.Context, **values) -> None:
    """Search hyperparameters with Optuna; every trial is an ordinary run in the study folder."""
    from tfvision_cli.training.tune import run_study

    study_dir, study = _study(ctx, values)
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

    report = run_study(study_dir, study, on_trial, values["timeout"])
    if values["as_json"]:
        console.emit_json(report)
        return
    _print(report, study.metric)


def _study(ctx: typer.Context, values: dict):
    """(study folder, Study): a new study from the options, or the one in --study-dir."""
    from tfvision_cli.config import load_yaml
    from tfvision_cli.errors import UsageError
    from tfvision_cli.files import is_temporary
    from tfvision_cli.runs import runs_root
    from tfvision_cli.training.tune import (
        STUDY_FILE,
        Study,
        check_storage,
        create_study_file,
        grid_of,
        grid_size,
        load_study,
        parse_space,
        without_password,
    )

    study_dir = values["study_dir"]
    if values["resume"]:
        if study_dir is None:
            raise UsageError("--resume needs --study-dir")
        study = load_study(study_dir)
        if values["trials"]:
            study.trials = values["trials"]
        if values["storage"] and without_password(values["storage"]) == study.storage:
            study.storage = values["storage"]  # the password, for this process only
        return study_dir, study
    if values["space"] is None or values["dataset"] is None:
        raise UsageError("give DATASET and --space (or --resume --study-dir DIR)")
    try:
        text = values["space"].read_text()
    except OSError as e:
        raise UsageError(f"cannot read {values['space']}: {e.strerror}") from None
    space = parse_space(load_yaml(text, f"space file {values['space']}"), str(values["space"]))
    trials = values["trials"]
    if values["sampler"] == "grid":
        grid_of(space)
        trials = min(trials or grid_size(space), grid_size(space))
    fixed = given(ctx, values)
    study = Study(
        dataset=values["dataset"],
        space=space,
        fixed=fixed,
        sampler=values["sampler"],
        pruner=values["pruner"],
        metric=values["metric"],
        trials=trials or 20,
        seed=fixed.get("seed", 0),
        storage=values["storage"],
    )
    _check(study)
    if study_dir is None:
        slug = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(study.dataset).name).strip("_") or "data"
        study_dir = runs_root() / f"tune-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    others = study_dir.exists() and any(not is_temporary(p.name) for p in study_dir.iterdir())
    if others and not (study_dir / STUDY_FILE).exists():
        raise UsageError(f"{study_dir} exists and is not a tfvision study; refusing to use it")
    if study.storage:
        check_storage(study.storage)
    # the same command started on other processes at once: one creates, the others join
    on_disk = dataclasses.replace(study, storage=without_password(study.storage))
    if not create_study_file(study_dir, study) and load_study(study_dir) != on_disk:
        raise UsageError(f"{study_dir} holds another study", hint="--resume continues it as it is")
    return study_dir, study


def _check(study) -> None:
    """Every trial's names and values, checked before TensorFlow: the fixed options with the
    first choice (or the low end) of every dimension."""
    from tfvision_cli.errors import UsageError
    from tfvision_cli.training.session import check_config
    from tfvision_cli.training.tune import trial_config

    first = {d.name: d.choices[0] if d.choices else d.low for d in study.space}
    try:
        check_config(trial_config(study, first))
    except UsageError as e:
        raise UsageError(f"with the space's first values: {e}") from None


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


tune.__signature__ = command_signature(_OWN, ("dataset",), config_options())
