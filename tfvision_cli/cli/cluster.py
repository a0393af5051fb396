"""`tfvision cluster local --workers N -- train ...`."""

from __future__ import annotations

import shlex
import sys
import time

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import examples

group = typer.Typer(
    help="Multi-worker training (tf.distribute.MultiWorkerMirroredStrategy).",
    no_args_is_help=True,
)


@group.command(
    "local", epilog=examples("tfvision cluster local --workers 2 -- train mnist --epochs 2")
)
def local(
    command: list[str] = typer.Argument(
        ..., help="The tfvision command each worker runs, after --: -- train mnist ..."
    ),
    workers: int = typer.Option(2, "--workers", "-n", min=2, max=64, help="Worker processes."),
) -> None:
    """Run a tfvision command as N workers on this machine (loopback ports, generated TF_CONFIG).

    The same command on a real cluster: set TF_CONFIG on each host and run `tfvision train ...`
    there (see the README). Exit 1 when a worker fails (the others are stopped), 130 on Ctrl-C.
    """
    from tfvision_cli.errors import TfvisionError, UsageError
    from tfvision_cli.runs import runs_root
    from tfvision_cli.training.cluster import describe_exit, run_local

    command = list(command)
    if command[0] != "train":
        raise UsageError(f"cluster local runs `train`, not {command[0]!r}")
    if "--run-dir" not in command and not any(a.startswith("--run-dir=") for a in command):
        # every worker must name the same run directory; the chief creates it
        command += ["--run-dir", str(runs_root() / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}")]
    again = shlex.join(["tfvision", "cluster", "local", "--workers", str(workers), "--", *command])
    console.log(
        f"cluster: {workers} workers on 127.0.0.1; the same command resumes: " + "{again}",
        again=again,
    )

    def started(index: int, pid: int) -> None:
        console.log(f"cluster: worker {index} started (pid {pid})")

    code, failed, returncode = run_local(
        command,
        workers,
        on_stdout=lambda line: print(line, flush=True),
        on_stderr=lambda line: print(line, file=sys.stderr, flush=True),
        on_start=started,
    )
    if code == 130:
        raise typer.Exit(130)
    if failed is not None:
        raise TfvisionError(
            f"worker {failed} {describe_exit(returncode)}; the other workers were "
            "stopped. Finished epochs are kept",
            hint=f"resume with: {again}",
        )


app.add_typer(group, name="cluster")
