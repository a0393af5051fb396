"""`tfvision tune DATASET --space space.yaml [train options fixed for every trial]`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, choice, examples, flag
from tfvision_cli.cli.complete import complete_datasets
from tfvision_cli.cli.options import takes_config
from tfvision_cli.training.study_storage import without_password
from tfvision_cli.training.tune import METRICS, PRUNERS, SAMPLERS

EXAMPLES = examples(
    "tfvision tune mnist --space space.yaml --trials 20 --epochs 3",
    "PGPASSWORD=... tfvision tune mnist --space space.yaml --trials 40 --storage "
    "postgresql://me@db.example/studies --study-name mnist-lr",
    "tfvision tune --list --storage postgresql://me@db.example/studies",
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
        None,
        "--storage",
        help="An Optuna storage URL shared by machines: postgresql://USER@HOST/DB (password "
        "from PGPASSWORD; needs pip install -e '.[postgres]').",
    ),
    study_name: str | None = typer.Option(
        None,
        "--study-name",
        help="The study's name in --storage, the same on every machine (default: the study "
        "folder's name).",
    ),
    resume: bool = flag(False, "--resume", help="Continue the study in --study-dir."),
    list_studies: bool = flag(False, "--list", help="List the studies in --storage and stop."),
    as_json: Json = False,
    flags: dict,
) -> None:
    """Search hyperparameters with Optuna; every trial is an ordinary run in the study folder."""
    from tfvision_cli.training.tune import new_study, resumed_study, run_study, study_folder

    if list_studies:
        _list(storage, as_json)
        return
    if resume:
        study = resumed_study(study_dir, trials, storage)
    else:
        study = new_study(dataset, space, flags, sampler, pruner, metric, trials, storage)
        study_dir = study_folder(study, study_dir, study_name)
    where = f" in {without_password(study.storage)}" if study.storage else ""
    console.log(
        f"study {study.name}{where}: {study.trials} trials, {study.sampler} sampler, "
        f"{study.pruner} pruner -> " + "{dir}",
        dir=study_dir,
    )

    reporter = TuneReporter(study.metric)
    try:
        report = run_study(study_dir, study, reporter, timeout)
    finally:
        reporter.close()
    if report.get("few_trials") and any("importances" in p for p in report["plots"]):
        console.warn(report["few_trials"] + " (param_importances.png)")
    if as_json:
        console.emit_json(report)
        return
    _print(report, study.metric)


def _list(storage: str | None, as_json: bool) -> None:
    """tune --list --storage URL: the studies on a server."""
    from tfvision_cli.errors import UsageError
    from tfvision_cli.training.study_storage import check_storage, list_studies

    if not storage:
        raise UsageError("--list needs --storage URL (a study folder's own file is one study)")
    check_storage(storage)
    rows = list_studies(storage)
    if as_json:
        console.emit_json(rows)
        return
    table = [
        [
            r["name"],
            r["trials"].get("complete", 0),
            sum(r["trials"].values()),
            f"{r['best']['value']:.4f}" if r["best"] else "",
            r["metric"] or "",
            r["dataset"] or "",
            r["model"] or "",
            ", ".join(r["hosts"]),
        ]
        for r in rows
    ]
    console.print_table(
        console.table(
            f"Studies in {without_password(storage)}",
            ["study", "#complete", "#trials", "#best", "metric", "dataset", "model", "hosts"],
            table,
        )
    )


def _print(report: dict, metric: str) -> None:
    rows = sorted(report["trials"], key=lambda t: (t["value"] is None, -(t["value"] or 0)))
    names = sorted({k for t in rows for k in t["params"]})
    hosts = len({t.get("host") for t in rows}) > 1  # several machines: who ran each trial
    console.print_table(
        console.table(
            f"Study {report['study_dir']}: {len(rows)} trials",
            ["#trial", "state", f"#{metric}", *names, *(["host", "run folder"] if hosts else [])],
            [
                [
                    t["number"],
                    t["state"],
                    f"{t['value']:.4f}" if t["value"] is not None else "",
                    *(_short(t["params"].get(n)) for n in names),
                    *([t.get("host") or "", t.get("run_dir") or ""] if hosts else []),
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


class TuneReporter:
    """A study's progress. On a terminal: a bar over the study's trials (done/total, best so
    far, elapsed, time left) and one over the current trial's epoch, with a line per trial
    above them. Piped: one line per event (trial started, epoch ended, trial ended)."""

    def __init__(self, metric: str):
        self.metric = metric
        self.live = console.err.is_terminal and not console.is_quiet()
        self.bar = self.study_task = self.epoch_task = None
        self.trial: int | None = None
        self.best = "best -"

    def __call__(self, kind: str, **d) -> None:
        if kind == "trial_start":
            self.trial = d["number"]
            console.log(f"trial {d['number']} started: " + "{p}", p=_params(d["params"]))
            if self.live:
                self._bars(d["total"])
        elif kind == "epoch_begin" and self.bar is not None:
            self.bar.reset(self.epoch_task, total=d["steps"])
            description = f"  trial {self.trial} epoch {d['epoch']}/{d['epochs']}"
            self.bar.update(self.epoch_task, description=description, visible=True)
        elif kind == "batch" and self.bar is not None:
            self.bar.update(self.epoch_task, completed=d["step"])
        elif kind == "epoch_end" and not self.live:
            logs = "  ".join(f"{k} {v:.4f}" for k, v in d["logs"].items() if k.startswith("val"))
            console.log(
                f"trial {self.trial} epoch {d['epoch']}/{d['epochs']}  {logs}  {d['seconds']:.1f}s"
            )
        elif kind == "trial_end":
            self._trial_end(d)
        elif kind == "skipped":
            for failure in d["files"]:
                console.warn(f"skipped {failure}")

    def _trial_end(self, d: dict) -> None:
        row, best = d["row"], d["best"]
        value = f"{row['value']:.4f}" if row["value"] is not None else "-"
        if best:
            self.best = f"best {best['value']:.4f} (trial {best['number']})"
        left = f", ~{_duration(d['left'])} left" if d["left"] is not None else ""
        console.log(
            f"trial {row['number']} {row['state']}: {self.metric} {value}; {self.best}; "
            f"{d['done']}/{d['total']} done, {_duration(d['elapsed'])} elapsed{left}"
        )
        if self.bar is not None:
            self.bar.update(self.study_task, completed=d["done"], total=d["total"], best=self.best)
            self.bar.update(self.epoch_task, visible=False)

    def _bars(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.bar is None:
            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                "{task.fields[best]}",
                console=console.err,
            )
            self.bar.start()
            self.study_task = self.bar.add_task("trials", total=total, best=self.best)
            self.epoch_task = self.bar.add_task("", total=1, best="", visible=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _params(params: dict) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
