"""`tfvision train DATASET [options]`: the options are TrainConfig's fields (cli/options.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from tfvision_cli import console, interrupts
from tfvision_cli.cli.common import flag, run_dir_of
from tfvision_cli.cli.complete import complete_datasets, complete_runs
from tfvision_cli.cli.options import config_options, given

# The command line's own spelling of a few options, and what is not a training option.
_OWN = [
    inspect.Parameter(
        "dataset",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=typer.Argument(
            None,
            help="TFDS name (mnist, cifar10, ...), digits, or a folder. Default: mnist.",
            autocompletion=complete_datasets,
            show_default=False,
        ),
        annotation=str | None,
    ),
    *config_options(),
    *(
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in (
            (
                "config_file",
                Path | None,
                typer.Option(None, "--config", help="YAML file of options."),
            ),
            (
                "model_option",
                list[str],
                typer.Option([], "--model-option", help="KEY=VALUE for the model (repeatable)."),
            ),
            (
                "image_size",
                str | None,
                typer.Option(None, "--image-size", help="Resize images to H or H,W."),
            ),
            (
                "run_dir",
                Path | None,
                typer.Option(
                    None,
                    "--run-dir",
                    help="Where the run goes (or is).",
                    autocompletion=complete_runs,
                ),
            ),
            (
                "name",
                str | None,
                typer.Option(
                    None,
                    "--name",
                    help="Name the run: it goes to the runs folder under this name (what `runs "
                    "list` shows and every command takes).",
                ),
            ),
            (
                "resume",
                bool,
                flag(False, "--resume", help="Continue a run (--run-dir or latest)."),
            ),
            ("quiet", bool, flag(False, "--quiet", "-q", help="No progress output.")),
            (
                "as_json",
                bool,
                flag(False, "--json", help="One JSON object on stdout at the end."),
            ),
        )
    ),
]


def train(ctx: typer.Context, **values) -> None:
    """Train a model; the run (config, best model, history, metrics) goes to saved_models/."""
    from tfvision_cli import config as config_lib
    from tfvision_cli.cli.common import parse_image_size, parse_model_options
    from tfvision_cli.errors import Interrupted
    from tfvision_cli.runs import RunDir, resolve_run
    from tfvision_cli.training.session import check_config
    from tfvision_cli.training.session import train as do_train

    console.set_quiet(values["quiet"])
    run_dir, resume = run_dir_of(values), values["resume"]
    file_values: dict = {}
    if resume or (run_dir is not None and RunDir(run_dir).exists()):
        run = resolve_run(run_dir or "latest")
        run_dir = run.path
        if resume and _already_complete(run, given(ctx, values), values["as_json"]):
            return
        file_values = config_lib.read_yaml(run.config)
    if values["config_file"] is not None:
        file_values.update(config_lib.read_yaml(values["config_file"]))
    flags = given(ctx, values)
    size = parse_image_size(values["image_size"])
    flags.update(
        dataset=values["dataset"],
        image_size=list(size) if size else None,
        model_options=parse_model_options(values["model_option"]) or None,
    )
    _architecture_of_init_from(flags, file_values)
    config = config_lib.resolve(None, file_values, flags, validate=False)
    check_config(config)  # every name in the command line, all at once, before TensorFlow

    reporter = console.TrainingReporter()
    try:
        result = do_train(config, run_dir=run_dir, resume=resume, on_event=reporter)
    except BaseException as e:
        if not interrupts.caused(e):
            raise
        reporter.close()
        where = f" --run-dir {reporter.run_path}" if reporter.run_path else ""
        raise Interrupted(
            f"training interrupted; finished epochs are kept. "
            f"Continue with: tfvision train{where} --resume"
        ) from None
    finally:
        reporter.close()
    m = result.metrics
    if values["as_json"]:
        console.emit_json({"run_dir": str(result.run_dir), "metrics": m})
        return
    console.log(
        f"[green]done[/] test accuracy [bold]{m['test_accuracy']:.4f}[/], test loss "
        f"{m['test_loss']:.4f}, best val accuracy {m['val_accuracy']}, "
        f"{m['train_seconds']:.1f} s training -> " + "{run}",
        run=result.run_dir,
    )
    typer.echo(str(result.run_dir))


def _already_complete(run, flags: dict, as_json: bool) -> bool:
    """--resume on a finished run (and no more epochs asked for): say so, train nothing."""
    state, metrics = run.read_state(), run.read_metrics()
    total = metrics.get("epochs")
    asked = flags.get("epochs")
    if state.get("status") != "completed" or (
        asked is not None and total is not None and asked > total
    ):
        return False
    if as_json:
        console.emit_json({"run_dir": str(run.path), "metrics": metrics, "already_complete": True})
        return True
    accuracy = metrics.get("test_accuracy")
    console.log(
        "{run} is complete"
        + (f" ({total} epochs, test accuracy {accuracy:.4f})" if accuracy is not None else "")
        + "; nothing to train (--epochs N with a larger N trains on)",
        run=run.path,
    )
    typer.echo(str(run.path))
    return True


def _architecture_of_init_from(flags: dict, file_values: dict) -> None:
    """--init-from RUN without --model trains the run's model (with its options)."""
    from tfvision_cli.training.finetune import run_architecture

    spec = flags.get("init_from") or file_values.get("init_from")
    if spec and "model" not in flags and "model" not in file_values:
        architecture = run_architecture(spec) or {}
        flags["model"] = architecture.get("model", flags.get("model"))
        flags["model_options"] = flags.get("model_options") or architecture.get("model_options")


train.__signature__ = inspect.Signature(
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *_OWN,
    ]
)
