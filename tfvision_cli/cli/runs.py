"""`tfvision runs list|show|rm`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples, flag, model_argument
from tfvision_cli.cli.complete import complete_runs

group = typer.Typer(
    help="Training runs in saved_models/ (or $TFVISION_RUNS_DIR).", no_args_is_help=True
)


def _summary(run, state: dict | None) -> dict:
    from tfvision_cli.config import read_yaml
    from tfvision_cli.runs import epochs_done

    metrics = run.read_metrics() if state is not None else {}
    total = metrics.get("epochs")
    if total is None and state is not None and run.config.is_file():
        total = (read_yaml(run.config) or {}).get("epochs")
    return {
        "name": run.path.name,
        "run_dir": str(run.path),
        "dataset": (state or {}).get("dataset"),
        "model": (state or {}).get("model"),
        "status": (state or {}).get("status") if state is not None else "unreadable",
        "kind": (state or {}).get("kind", "train"),
        "parent": (state or {}).get("parent"),
        "created": (state or {}).get("created"),
        "epochs_done": epochs_done(run),
        "epochs": total,
        "test_accuracy": metrics.get("test_accuracy"),
        "train_seconds": metrics.get("train_seconds"),
    }


def _kind(r: dict) -> str:
    """'prune of mnist-run': the kind, and the parent's name when there is one."""
    if not r.get("parent"):
        return r["kind"]
    parent = Path(r["parent"])
    name = parent.parent.name if parent.name == "model.keras" else parent.name  # a run's model
    return f"{r['kind']} of {name}"


def _dataset(name: str | None) -> str:
    return Path(name).name if name and ("/" in name or "\\" in name) else (name or "")


@group.command("list", epilog=examples("tfvision runs list", "tfvision runs list --json"))
def list_cmd(as_json: Json = False) -> None:
    """Runs, newest first: name, kind (train, fine-tune, prune, distill, tune trial) and the run
    it came from, status, epochs done/total, dataset, model, test accuracy."""
    from tfvision_cli.runs import list_runs, runs_root

    rows = [_summary(run, state) for run, state in list_runs()]
    if as_json:
        console.emit_json(rows)
        return
    if not rows:
        console.log("no runs in {root}", root=runs_root())
        return
    from rich import box

    t = console.table(
        f"Runs in {runs_root()}",
        ["name", "kind", "status", "#epochs", "dataset", "model", "#test acc"],
        [
            [
                r["name"],
                _kind(r),
                r["status"],
                f"{r['epochs_done']}/{r['epochs'] if r['epochs'] is not None else '?'}",
                _dataset(r["dataset"]),
                r["model"],
                f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "",
            ]
            for r in rows
        ],
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    for column in t.columns[:4] + t.columns[6:]:  # a name is what the other commands take
        column.no_wrap = True
    for column in t.columns[4:6]:
        column.overflow = "fold"
    console.print_table(t)


@group.command(epilog=examples("tfvision runs show latest", "tfvision runs show flowers --json"))
def show(
    run: str = model_argument("latest", help="Run name (as `runs list` shows), folder or latest."),
    as_json: Json = False,
) -> None:
    """One run: its status, data, model, metrics and configuration."""
    from tfvision_cli.config import read_yaml
    from tfvision_cli.runs import resolve_run

    r = resolve_run(run)
    state = r.read_state()
    config = read_yaml(r.config) if r.config.is_file() else {}
    metrics = r.read_metrics()
    if as_json:
        console.emit_json(
            {"run_dir": str(r.path), "state": state, "config": config, "metrics": metrics}
        )
        return
    s = _summary(r, state)
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(s["created"])) if s["created"] else ""
    rows = [
        ["name", s["name"]],
        ["folder", str(r.path)],
        ["status", s["status"]],
        ["created", created],
        ["dataset", s["dataset"]],
        ["model", s["model"]],
        ["epochs", f"{s['epochs_done']}/{s['epochs'] if s['epochs'] is not None else '?'}"],
        ["kind", _kind(s)],
    ]
    if state.get("mlflow_run_id"):
        rows.append(["MLflow run", state["mlflow_run_id"]])
    for key in ("test_accuracy", "val_accuracy", "test_loss", "train_seconds", "params"):
        if metrics.get(key) is not None:
            rows.append([key.replace("_", " "), metrics[key]])
    console.print_table(console.table(f"Run {s['name']}", ["", ""], rows, show_header=False))
    options = [[k, v] for k, v in config.items() if v not in (None, [], {})]
    console.print_table(console.table("Configuration", ["option", "value"], options))


@group.command(
    "rm", epilog=examples("tfvision runs rm old-run", "tfvision runs rm run-a run-b --yes")
)
def rm(
    runs: list[str] = typer.Argument(
        ..., help="Run names (as `runs list` shows) or folders.", autocompletion=complete_runs
    ),
    yes: bool = flag(False, "--yes", "-y", help="Delete without asking."),
) -> None:
    """Delete runs. Only tfvision runs holding nothing but tfvision's files, and none in use."""
    from tfvision_cli.errors import TfvisionError, UsageError
    from tfvision_cli.runs import remove_run, resolve_run

    found = [resolve_run(name) for name in runs]  # every name checked before anything goes
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("not deleting without --yes when input is not a terminal")
        names = ", ".join(r.path.name for r in found)
        if not typer.confirm(f"Delete {len(found)} run(s): {names}?", err=True):
            raise UsageError("nothing deleted")
    failed = []
    for run in found:
        try:
            remove_run(run)
            console.log("deleted {run}", run=run.path)
        except TfvisionError as e:
            console.warn(str(e))
            failed.append(run.path.name)
    if failed:
        raise TfvisionError(f"{len(failed)} of {len(found)} runs not deleted: {', '.join(failed)}")


app.add_typer(group, name="runs")
