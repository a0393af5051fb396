"""`tfvision train DATASET [options]`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console


def train(
    dataset: str | None = typer.Argument(
        None, help="TFDS name (mnist, cifar10, ...), digits, or a folder. Default: mnist."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (default fastnet)."),
    epochs: int | None = typer.Option(None, "--epochs", "-e", help="Epochs to train."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Per-replica batch."),
    optimizer: str | None = typer.Option(
        None, "--optimizer", help="adam, adamw, sgd, nadam, rmsprop."
    ),
    learning_rate: float | None = typer.Option(None, "--learning-rate", "--lr", help="Peak rate."),
    schedule: str | None = typer.Option(None, "--schedule", help="constant, cosine, one-cycle."),
    warmup_epochs: float | None = typer.Option(None, "--warmup-epochs", help="Warm-up length."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="Decoupled decay."),
    label_smoothing: float | None = typer.Option(None, "--label-smoothing", help="0 to <1."),
    augment: str | None = typer.Option(None, "--augment", help="none, light or standard."),
    validation_split: float | None = typer.Option(
        None, "--validation-split", help="Share of train held out (seeded) for validation."
    ),
    early_stopping: int | None = typer.Option(
        None, "--early-stopping", help="Stop after this many epochs without improvement."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (same seed, same result)."),
    preset: str | None = typer.Option(None, "--preset", help="default, fast, keras-example."),
    config_file: Path | None = typer.Option(None, "--config", help="YAML file of options."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE for the model."),
    pretrained: bool | None = typer.Option(None, "--pretrained", help="ImageNet weights."),
    image_size: str | None = typer.Option(None, "--image-size", help="Resize images to H or H,W."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="TFDS data directory."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where the run goes (or is)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run (--run-dir or latest)."),
    strategy: str | None = typer.Option(
        None, "--strategy", help="auto, default, mirrored, multi-worker, tpu."
    ),
    mixed_precision: bool | None = typer.Option(
        None, "--mixed-precision", help="float16/bfloat16."
    ),
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", help="Cap the steps of each epoch (quick trials)."
    ),
    steps_per_execution: int | None = typer.Option(
        None, "--steps-per-execution", help="Batches per call into TensorFlow."
    ),
    xla: bool | None = typer.Option(None, "--xla/--no-xla", help="XLA-compile (default off)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout at the end."),
) -> None:
    """Train a model; the run (config, best model, history, metrics) goes to saved_models/."""
    from tfvision_cli import config as config_lib
    from tfvision_cli.cli.common import parse_image_size, parse_model_options
    from tfvision_cli.errors import Interrupted
    from tfvision_cli.runs import RunDir, resolve_run
    from tfvision_cli.train import train as do_train

    console.set_quiet(quiet)
    file_values: dict = {}
    if resume or (run_dir is not None and RunDir(run_dir).exists()):
        run = resolve_run(run_dir or "latest")
        run_dir = run.path
        file_values = config_lib.read_yaml(run.config)
    if config_file is not None:
        file_values.update(config_lib.read_yaml(config_file))
    size = parse_image_size(image_size)
    flags = {
        "dataset": dataset,
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "schedule": schedule,
        "warmup_epochs": warmup_epochs,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "augment": augment,
        "validation_split": validation_split,
        "early_stopping": early_stopping,
        "seed": seed,
        "preset": preset,
        "pretrained": pretrained,
        "data_dir": data_dir,
        "image_size": list(size) if size else None,
        "strategy": strategy,
        "mixed_precision": mixed_precision,
        "steps_per_execution": steps_per_execution,
        "xla": xla,
        "steps_per_epoch": steps_per_epoch,
        "model_options": parse_model_options(model_option) or None,
    }
    config = config_lib.resolve(None, file_values, flags)

    reporter = console.TrainingReporter()
    try:
        result = do_train(config, run_dir=run_dir, resume=resume, on_event=reporter)
    except KeyboardInterrupt:
        reporter.close()
        where = f" --run-dir {reporter.run_path}" if reporter.run_path else ""
        raise Interrupted(
            f"training interrupted; finished epochs are kept. "
            f"Continue with: tfvision train{where} --resume"
        ) from None
    finally:
        reporter.close()
    m = result.metrics
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
