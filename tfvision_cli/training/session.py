"""train(config) -> TrainResult: the stages of tfvision_cli/training/ composed in the keras-io order
(data, model, train, evaluate)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfvision_cli.config import TrainConfig, parse_adversarial
from tfvision_cli.errors import UsageError
from tfvision_cli.files import write_json
from tfvision_cli.models.io import trained_model
from tfvision_cli.training.data import (
    adapt_to_data,
    build_pipelines,
    choose_epochs,
    chosen_from_data,
    describe_data,
    load_splits,
    open_data,
    resolve_paths,
    setup_tensorflow,
    size,
)
from tfvision_cli.training.loop import best_value, fit, make_callbacks
from tfvision_cli.training.model import (
    build_model,
    compile_model,
    finish_model,
    test_report,
    weights_digest,
)
from tfvision_cli.training.run import choose_run, own_files, run_lifecycle


def check_config(config: TrainConfig) -> None:
    """Every problem of a configuration, names included (model, its options, dataset), raised
    as one usage error: all at once, and before TensorFlow is imported."""
    from tfvision_cli.data.catalog import check_dataset
    from tfvision_cli.models.registry import check_model
    from tfvision_cli.training import finetune

    problems = config.problems()
    if finetune.is_model_file(config.model):
        problems += finetune.check_source(config.model)
    else:
        problems += check_model(config.model, config.model_options)
    if config.init_from:
        problems += finetune.check_source(config.init_from)
    problems += check_dataset(config.dataset, config.data_dir)
    if problems:
        raise UsageError("; ".join(problems))


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict


def train(
    config: TrainConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    on_event: Callable[..., None] | None = None,
    extra_callbacks: list | None = None,
    keep_from_epoch: int = 1,
    wrap_model: Callable | None = None,
) -> TrainResult:
    """Train config.model on config.dataset; write the run directory; return its metrics.

    extra_callbacks: Keras callbacks of the caller's (tune's trial pruning, prune's masks), run
    after tfvision's own and before the epoch's backup is committed.
    keep_from_epoch: epochs before this one are never kept as the best (prune's ramp).
    wrap_model: model -> the model to fit (distill's Distiller around the student); the run
    keeps what models.io.trained_model finds in it."""
    with contextlib.ExitStack() as stack:  # what lives as long as the training (--cache disk)
        return _train(
            stack, config, run_dir, resume, on_event, extra_callbacks, keep_from_epoch, wrap_model
        )


def _train(stack, config, run_dir, resume, on_event, extra_callbacks, keep_from_epoch, wrap_model):
    from tfvision_cli.models.registry import get_entry
    from tfvision_cli.training.distribute import choose_strategy, cluster_size

    emit = on_event or (lambda kind, **data: None)
    wrap_model = _adversarial(config, wrap_model)
    setup_tensorflow(config)
    tf_imported = time.perf_counter()
    if not config.model.endswith(".keras"):
        get_entry(config.model)  # an unknown model fails before any data is read
    config = resolve_paths(config)
    if run_dir is None and config.strategy in ("auto", "multi-worker") and cluster_size() > 1:
        raise UsageError(
            "multi-worker training needs --run-dir: the same folder on every worker, on storage "
            "they all see (the chief writes it, the others read its checkpoints)"
        )
    run, resuming = choose_run(config, run_dir, resume)
    placement = choose_strategy(config.strategy)
    emit(
        "placement",
        text=placement.describe(),
        replicas=placement.replicas,
        worker=placement.worker_index,
        workers=placement.num_workers,
    )

    config, info, splits, pipes = _data(stack, config, placement, emit)

    # Model: the run directory is written only once it builds
    model, notes = build_model(config, splits.shape, info.class_names, placement, pipes.steps)
    splits.notes.update(notes)
    if wrap_model is not None:
        model = wrap_model(model, placement)
        compile_model(model, config, pipes.steps, placement)

    # Train
    is_chief = placement.is_chief
    monitor = "val_accuracy" if pipes.val is not None else "accuracy"
    with (
        run_lifecycle(run, resuming, is_chief, config, info, splits.shape) as state,
        own_files(run, is_chief, placement.worker_index) as own,
    ):
        emit("run", path=str(run.path), resuming=resuming)
        callbacks = make_callbacks(
            config,
            run,
            own,
            resuming,
            is_chief,
            state,
            monitor,
            pipes.steps,
            emit,
            keep_from_epoch,
        )
        callbacks.all[-1:-1] = extra_callbacks or []
        start = time.perf_counter()
        history = fit(model, pipes, callbacks, config, placement, run)
        train_seconds = time.perf_counter() - start

        # Evaluate
        splits.notes.update(callbacks.notes)
        splits.notes.update(finish_model(model, pipes, callbacks, run, config, placement))
        metrics = {
            **test_report(model, pipes, placement),
            "test_examples": size(splits.test),
            **_session(history, state, pipes, size(splits.train), train_seconds),
            "seconds_to_first_step": _since(tf_imported, callbacks.progress.first_step_done),
            "best_epoch": run.read_state().get("best_epoch") if is_chief else None,
            **_what_trained(config, pipes, placement, trained_model(model)),
            "notes": splits.final_notes(),
        }
        if is_chief:
            write_json(run.metrics, metrics)
    return TrainResult(run.path, metrics)


def _what_trained(config: TrainConfig, pipes, placement, kept) -> dict:
    """The facts of a run for metrics.json: data, model, epochs, batch, devices, weights."""
    return {
        "dataset": config.dataset,
        "model": config.model,
        "epochs": config.epochs,
        "global_batch_size": pipes.global_batch,
        "replicas": placement.replicas,
        "strategy": placement.kind,
        "params": int(kept.count_params()),
        # equal on every worker of a multi-worker run: they trained one model
        "weights_sha256": weights_digest(kept),
    }


def _data(stack, config: TrainConfig, placement, emit):
    """(config with what the data decides, dataset info, splits, tf.data pipelines)."""
    dataset = open_data(config, emit)
    info = dataset.info
    splits = load_splits(dataset, config, placement.num_workers)
    asked = config
    config = choose_epochs(config, size(splits.train), placement.replicas)
    config = adapt_to_data(config, size(splits.train), splits.shape, info.num_classes)
    if "skipped_files" in splits.notes:
        emit("skipped", files=splits.notes["skipped_files"])
    # --cache disk: decoded images kept in a temporary folder for the epochs after the first
    disk = splits.cache == "disk"
    scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="tfvision-")) if disk else None
    pipes = build_pipelines(splits, info, config, placement.replicas, placement, scratch)
    emit("data", **describe_data(info, splits, pipes))
    chosen = chosen_from_data(asked, config, pipes.steps)
    if chosen:
        emit("chosen", text=chosen)
    return config, info, splits, pipes


def _adversarial(config: TrainConfig, wrap_model: Callable | None) -> Callable | None:
    """--adversarial: the model is trained inside adversarial.trainer's wrapper."""
    from tfvision_cli.training import adversarial

    parsed = parse_adversarial(config.adversarial)
    if parsed is None:
        return wrap_model
    if wrap_model is not None:
        raise UsageError("--adversarial cannot be combined with distillation")
    kind, eps = parsed
    return lambda model, placement: adversarial.trainer(model, kind, eps, config.adversarial_share)


def _session(hist: dict, state: dict, pipes, n_train: int, seconds: float) -> dict:
    """What this session of the run did: epochs, time, speed, best validation accuracy."""
    epochs = len(hist.get("loss", []))
    seen = epochs * min(n_train, pipes.steps * pipes.global_batch)
    return {
        "val_accuracy": best_value(hist.get("val_accuracy"), state.get("best_value")),
        "epochs_this_session": epochs,
        "train_seconds": round(seconds, 3),
        "train_images_per_second": round(seen / seconds, 1) if seen and seconds > 0 else None,
    }


def _since(start: float, end: float | None) -> float | None:
    # issue 6's start-up target: TensorFlow imported -> first training step finished
    return round(end - start, 3) if end else None
