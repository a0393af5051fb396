"""The root `tfvision` Typer app and its error contract; every command module registers its
commands on it (`@app.command(...)`, or a sub-app with `app.add_typer`)."""

from __future__ import annotations

import traceback

import typer
from typer.core import TyperGroup

from tfvision_cli import __version__, console, interrupts
from tfvision_cli.cli.common import flag
from tfvision_cli.errors import TfvisionError

_debug = False


# `tfvision --help` lists the commands in the order of a model's life
LIFE_ORDER = (
    "data",
    "preprocess",
    "models",
    "build",
    "train",
    "tune",
    "runs",
    "board",
    "cluster",
    "evaluate",
    "calibrate",
    "compare",
    "explain",
    "robustness",
    "prune",
    "distill",
    "export",
    "benchmark",
    "predict",
    "serve",
)


class _Group(TyperGroup):
    """Turns errors from any command into one line on stderr and a documented exit code."""

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            _no_bool_labels(command, ctx)
        return command

    def get_help_option(self, ctx):
        _no_bool_labels(self, ctx, deep=False)
        return super().get_help_option(ctx)

    def list_commands(self, ctx):
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(LIFE_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))

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


def _no_bool_labels(command, ctx, deep: bool = True) -> None:
    """A flag takes no value: --help shows none for it (not `<bool>`), Typer's own included."""
    params = list(command.params)
    if command._help_option is not None or not deep:
        params.append(command._help_option)
    elif deep:
        params.append(command.get_help_option(ctx))
    for param in params:
        if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values() if deep else ():
        _no_bool_labels(sub, ctx)


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
