"""The `tfvision` command: Typer apps, one module per command group."""

from __future__ import annotations

import traceback

import typer
from typer.core import TyperGroup

from tfvision_cli import __version__, console, interrupts
from tfvision_cli.cli.common import flag
from tfvision_cli.errors import TfvisionError

_debug = False


class _Group(TyperGroup):
    """Turns errors from any command into one line on stderr and a documented exit code."""

    def invoke(self, ctx):
        _interrupts_raise()
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise  # Typer's own usage errors: exit code 2 with its message
        except BaseException as e:
            code, message = _describe(e)
            _report(e, message)
            raise typer.Exit(code) from None


def _describe(e: BaseException) -> tuple[int, str]:
    """The exit code and the one line for an error."""
    if isinstance(e, TfvisionError) and (e.exit_code == 130 or not _signalled):
        return e.exit_code, str(e)
    if isinstance(e, KeyboardInterrupt) or _signalled:
        # Some libraries turn an exception raised inside them into their own (TensorFlow
        # raises TypeError from a KeyboardInterrupt that lands while it traces): once a
        # signal came, whatever comes out is the interruption.
        return 130, "interrupted"
    if isinstance(e, OSError):  # a full disk, a read-only or missing folder, a permission
        return 1, _os_error(e)
    # not foreseen: still one line, the traceback with --debug
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return 1, f"{type(e).__name__}: {first} (run with --debug for the traceback)"


_signalled = False


def _interrupts_raise() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt everywhere: the command cleans up (every
    temporary is removed in a finally) and exits 130."""
    import signal
    import threading

    global _signalled
    _signalled = False
    interrupts.requested.clear()

    def on_signal(signum, frame):
        global _signalled
        _signalled = True
        interrupts.requested.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)


def _os_error(e: OSError) -> str:
    import os

    # h5py and others raise OSError(errno, long text) without a file name: the errno says it
    reason = os.strerror(e.errno) if e.errno else (str(e).strip().splitlines() or [""])[0]
    where = f": {e.filename}" if e.filename else ""
    return f"{reason or type(e).__name__}{where} (files written before are kept)"


def _report(e: BaseException, message: str) -> None:
    if _debug:
        traceback.print_exception(e)
    console.error(message)


app = typer.Typer(
    cls=_Group,
    name="tfvision",
    help="Train, evaluate and ship image classifiers with TensorFlow/Keras.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tfvision {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = flag(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = flag(
        False, "--debug", help="Show tracebacks and TensorFlow's own logs on errors."
    ),
) -> None:
    """Train, evaluate and ship image classifiers with TensorFlow/Keras.

    Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.
    """
    global _debug
    _debug = debug
    if debug:
        from tfvision_cli import tf_import

        tf_import.set_verbose(True)


def _register() -> None:
    from tfvision_cli.cli import (
        build,
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
        runs,
        train,
        tune,
    )

    app.add_typer(data.app, name="data")
    app.add_typer(models.app, name="models")
    app.add_typer(runs.app, name="runs")
    app.add_typer(cluster.app, name="cluster")
    app.command("preprocess")(preprocess.preprocess)
    app.command("build")(build.build)
    app.command("train")(train.train)
    app.command("tune")(tune.tune)
    app.command("evaluate")(evaluate.evaluate)
    app.command("predict")(predict.predict)
    app.command("compare")(compare.compare)
    app.command("prune")(prune.prune)
    app.command("distill")(distill.distill)
    app.command("explain")(explain.explain)
    app.command("robustness")(explain.robustness)
    app.command("export")(export.export)
    app.command("benchmark")(export.benchmark)


_register()


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
