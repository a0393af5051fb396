"""The `tfvision` command: Typer apps, one module per command group."""

from __future__ import annotations

import traceback

import typer
from typer.core import TyperGroup

from tfvision_cli import __version__, console
from tfvision_cli.errors import TfvisionError

_debug = False


class _Group(TyperGroup):
    """Turns errors from any command into one line on stderr and a documented exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TfvisionError as e:
            _report(e, str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            console.error("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise  # Typer's own usage errors: exit code 2 with its message
        except OSError as e:  # a full disk, a read-only or missing folder, a permission
            _report(e, _os_error(e))
            raise typer.Exit(1) from None
        except Exception as e:  # not foreseen: still one line, the traceback with --debug
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            _report(e, f"{type(e).__name__}: {first} (run with --debug for the traceback)")
            raise typer.Exit(1) from None


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
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
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
        data,
        evaluate,
        export,
        models,
        predict,
        preprocess,
        runs,
        train,
    )

    app.add_typer(data.app, name="data")
    app.add_typer(models.app, name="models")
    app.add_typer(runs.app, name="runs")
    app.add_typer(cluster.app, name="cluster")
    app.command("preprocess")(preprocess.preprocess)
    app.command("build")(build.build)
    app.command("train")(train.train)
    app.command("evaluate")(evaluate.evaluate)
    app.command("predict")(predict.predict)
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


def _in_a_cluster() -> bool:
    from tfvision_cli.distribute import cluster_size

    try:
        return cluster_size() > 1
    except TfvisionError:
        return False
