"""`tfvision board [RUN|STUDY|FOLDER]`: TensorBoard on loopback, its URL on stdout."""

from __future__ import annotations

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import examples
from tfvision_cli.cli.complete import complete_runs

EXAMPLES = examples(
    "tfvision board",
    "tfvision board latest",
    "tfvision board saved_models/tune-mnist-20261204-101500 --port 0",
)


@app.command("board", epilog=EXAMPLES)
def board(
    target: str | None = typer.Argument(
        None,
        help="A run (folder, name, latest), a tune study folder, or a folder of runs "
        "(default: the runs folder).",
        autocompletion=complete_runs,
        show_default=False,
    ),
    port: int = typer.Option(
        6006, "--port", min=0, max=65535, help="Loopback port (0: any free one)."
    ),
) -> None:
    """TensorBoard on a run, a study or all runs: scalars, and the HParams dashboard where
    trials and runs compare side by side. Serves on 127.0.0.1 until Ctrl-C."""
    import threading

    from tfvision_cli.training.tracking import board_folder, start_board

    folder = board_folder(target)
    url = start_board(folder, port)
    console.log("TensorBoard on {folder}: {url} (Ctrl-C stops it)", folder=folder, url=url)
    typer.echo(url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.log("TensorBoard stopped")
