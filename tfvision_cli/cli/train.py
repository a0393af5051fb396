"""`tfvision train DATASET [options]`: the options are TrainConfig's fields (cli/options.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console, interrupts
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    DATA,
    OUTPUT,
    Json,
    ModelOption,
    Name,
    Quiet,
    RunDir,
    examples,
    flag,
    run_dir_of,
)
from tfvision_cli.cli.complete import complete_datasets
from tfvision_cli.cli.options import takes_config

EXAMPLES = examples(
    "tfvision train mnist --model fastnet --epochs 3",
    "tfvision train ./my_images --model resnet18 --pretrained --name flowers",
)


@app.command("train", epilog=EXAMPLES)
@takes_config()
def train(
    ctx: typer.Context,
    dataset: str | None = typer.Argument(
        None,
        help="TFDS name (mnist, cifar10, ...), digits, or a folder. Default: mnist.",
        autocompletion=complete_datasets,
        show_default=False,
    ),
    *,
    config_file: Path | None = typer.Option(
        None, "--config", help="YAML file of options.", rich_help_panel=OUTPUT
    ),
    model_option: ModelOption = None,
    image_size: str | None = typer.Option(
        None, "--image-size", help="Resize images to H or H,W.", rich_help_panel=DATA
    ),
    run_dir: RunDir = None,
    name: Name = None,
    resume: bool = flag(
        False, "--resume", help="Continue a run (--run-dir or latest).", rich_help_panel=OUTPUT
    ),
    quiet: Quiet = False,
    as_json: Json = False,
    flags: dict,
) -> None:
    """Train a model; the run (config, best model, history, metrics) goes to saved_models/."""
    from tfvision_cli import config as config_lib
    from tfvision_cli.cli.common import parse_image_size, parse_model_options
    from tfvision_cli.errors import Interrupted
    from tfvision_cli.runs import RunDir as Run
    from tfvision_cli.runs import resolve_run
    from tfvision_cli.training.session import check_config
    from tfvision_cli.training.session import train as do_train

    console.set_quiet(quiet)
    run_dir = run_dir_of(run_dir, name)
    file_values: dict = {}
    if resume or (run_dir is not None and Run(run_dir).exists()):
        run = resolve_run(run_dir or "latest")
        run_dir = run.path
        if resume and _already_complete(run, flags, as_json):
            return
        file_values = config_lib.read_yaml(run.config)
    if config_file is not None:
        file_values.update(config_lib.read_yaml(config_file))
    size = parse_image_size(image_size)
    flags.update(
        dataset=dataset,
        image_size=list(size) if size else None,
        model_options=parse_model_options(model_option or []) or None,
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
    if config.calibrate:
        m["calibration"] = _calibrate(result.run_dir)
    if as_json:
        console.emit_json({"run_dir": str(result.run_dir), "metrics": m})
        return
    console.log(
        f"[green]done[/] test accuracy [bold]{m['test_accuracy']:.4f}[/], test loss "
        f"{m['test_loss']:.4f}, best val accuracy {m['val_accuracy']}, "
        f"{m['train_seconds']:.1f} s training -> " + "{run}",
        run=result.run_dir,
    )
    typer.echo(str(result.run_dir))


def _calibrate(run_dir: Path) -> dict:
    """train --calibrate: `tfvision calibrate` on the run just trained."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.evaluation.calibrate import calibrate

    record = calibrate(load_predictor(str(run_dir)))
    before, after = record["before"], record["after"]
    console.log(
        f"calibrated: temperature {record['temperature']:.4f}, ECE {before['ece']:.4f} -> "
        f"{after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}"
    )
    return {k: v for k, v in record.items() if k != "conformal"}


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
