"""The `tfvision` command: one module per command, each registering itself on cli/app.py's
app when imported."""

from __future__ import annotations

from tfvision_cli.cli import (  # noqa: F401 (importing a command module registers it)
    benchmark,
    board,
    build,
    calibrate,
    cluster,
    compare,
    data,
    distill,
    evaluate,
    explain,
    export,
    models,
    predict,
    preprocess,
    prune,
    robustness,
    runs,
    serve,
    train,
    tune,
)
from tfvision_cli.cli.app import app
from tfvision_cli.errors import TfvisionError

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="tfvision")
    except SystemExit as e:
        if _in_a_cluster():
            # After a peer is lost, TensorFlow's collective runtime can block or print
            # tracebacks while the interpreter tears down: a worker leaves at once instead.
            import os
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0 if e.code is None else e.code if isinstance(e.code, int) else 1)
        raise
    finally:
        # Interpreter shutdown runs full garbage collections over every object TensorFlow and
        # Keras created: ~0.75 s on 2 cores. Frozen objects are skipped by them; nothing is
        # left unwritten (tfvision's files are closed and renamed before this point).
        import gc

        gc.freeze()


def _in_a_cluster() -> bool:
    from tfvision_cli.training.distribute import cluster_size

    try:
        return cluster_size() > 1
    except TfvisionError:
        return False
