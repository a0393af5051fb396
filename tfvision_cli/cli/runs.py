"""`tfvision runs list|show`."""

from __future__ import annotations

import time

import typer

from tfvision_cli import console
from tfvision_cli.cli.common import flag, model_argument

app = typer.Typer(
    help="Training runs in saved_models/ (or $TFVISION_RUNS_DIR).", no_args_is_help=True
)


@app.command("list")
def list_cmd(as_json: bool = flag(False, "--json", help="JSON list on stdout.")) -> None:
    """Runs, newest first, with their status and test accuracy."""
    from tfvision_cli.runs import list_runs, runs_root

    rows = []
    for run, state in list_runs():
        metrics = run.read_metrics() if state is not None else {}
        rows.append(
            {
                "run_dir": str(run.path),
                "dataset": (state or {}).get("dataset"),
                "model": (state or {}).get("model"),
                "status": (state or {}).get("status") if state is not None else "unreadable",
                "created": (state or {}).get("created"),
                "test_accuracy": metrics.get("test_accuracy"),
                "epochs": metrics.get("epochs"),
                "train_seconds": metrics.get("train_seconds"),
            }
        )
    if as_json:
        console.emit_json(rows)
        return
    if not rows:
        console.log("no runs in {root}", root=runs_root())
        return
    console.print_table(
        console.table(
            f"Runs in {runs_root()}",
            ["run", "dataset", "model", "status", "created", "#test acc", "#epochs", "#train s"],
            [
                [
                    r["run_dir"],
                    r["dataset"],
                    r["model"],
                    r["status"],
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
                    if r["created"]
                    else "",
                    f"{r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "",
                    r["epochs"],
                    f"{r['train_seconds']:.1f}" if r["train_seconds"] else "",
                ]
                for r in rows
            ],
        )
    )


@app.command()
def show(run: str = model_argument("latest", help="Run directory or latest.")) -> None:
    """One run's configuration and metrics as JSON."""
    from tfvision_cli.config import read_yaml
    from tfvision_cli.runs import resolve_run

    r = resolve_run(run)
    console.emit_json(
        {
            "run_dir": str(r.path),
            "state": r.read_state(),
            "config": read_yaml(r.config),
            "metrics": r.read_metrics(),
        }
    )
