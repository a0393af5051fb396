"""train(config) -> TrainResult: a TrainSession's stages, prepare -> build -> fit -> report
(the keras-io order: data, model, train, evaluate). tune, prune, distill and --adversarial add
to a training through Hooks, never by editing these stages."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from tfvision_cli.training.tracking import check_tracker, tracked


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
    problems += check_tracker(config.track)
    if problems:
        raise UsageError("; ".join(problems))


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict


@dataclass
class Hooks:
    """What a caller adds to a training (tune, prune, distill, --adversarial).

    callbacks: Keras callbacks run in TrainCallbacks' `extra` slot (after the epoch's files are
        written, before the backup commits the epoch);
    keep_from_epoch: epochs before this one are never kept as the best (prune's ramp);
    wrap_model: (model, placement) -> the model to fit (distill's Distiller around the
        student, adversarial training's wrapper); the run keeps models.io.trained_model's."""

    callbacks: list = field(default_factory=list)
    keep_from_epoch: int = 1
    wrap_model: Callable | None = None
    kind: str = "train"  # what `runs list` calls the run: train, fine-tune, prune, ...
    parent: str | None = None  # the run (or study, or file) it came from
    tracking_parent: str | None = None  # the study's MLflow run, for a tune trial


def train(
    config: TrainConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    on_event: Callable[..., None] | None = None,
    hooks: Hooks | None = None,
) -> TrainResult:
    """Train config.model on config.dataset; write the run directory; return its metrics."""
    session = TrainSession(config, run_dir, resume, on_event, hooks or Hooks())
    with contextlib.ExitStack() as stack:  # what lives as long as the training (--cache disk)
        session.prepare(stack)
        session.build()
        with (
            run_lifecycle(
                session.run, session.resuming, session.is_chief, session.config, *session.shape
            ) as state,
            own_files(session.run, session.is_chief, session.placement.worker_index) as own,
        ):
            session.record_kind()
            with tracked(session, own, session.resuming) as session.tracking:
                session.fit(state, own)
                metrics = session.report(state)
                session.tracking.finish(own, metrics)
    return TrainResult(session.run.path, metrics)


class TrainSession:
    """One training in stages: prepare (TensorFlow, the run, the devices, the data) -> build
    (the model) -> fit (the callbacks and model.fit) -> report (test, metrics.json)."""

    def __init__(self, config, run_dir, resume, on_event, hooks: Hooks):
        self.config: TrainConfig = config
        self.run_dir, self.resume, self.hooks = run_dir, resume, hooks
        self.emit = on_event or (lambda kind, **data: None)
        self.run = self.placement = self.info = self.splits = self.pipes = None
        self.model = self.callbacks = self.tracking = None
        self.resuming = False
        self.history: dict = {}
        self.train_seconds = 0.0
        self.clock: dict[str, float] = {}  # perf_counter() at each stage's end

    @property
    def is_chief(self) -> bool:
        return self.placement.is_chief

    @property
    def shape(self) -> tuple:
        """(dataset info, image shape): what run_lifecycle records."""
        return self.info, self.splits.shape

    def prepare(self, stack: contextlib.ExitStack) -> None:
        from tfvision_cli.models.registry import get_entry
        from tfvision_cli.training.distribute import choose_strategy, cluster_size

        config = self.config
        self.hooks.wrap_model = _adversarial(config, self.hooks.wrap_model)
        self.clock["start"] = time.perf_counter()
        setup_tensorflow(config)
        self.clock["tensorflow"] = time.perf_counter()
        if not config.model.endswith(".keras"):
            get_entry(config.model)  # an unknown model fails before any data is read
        config = resolve_paths(config)
        multi_worker = config.strategy in ("auto", "multi-worker") and cluster_size() > 1
        if self.run_dir is None and multi_worker:
            raise UsageError(
                "multi-worker training needs --run-dir: the same folder on every worker, on "
                "storage they all see (the chief writes it, the others read its checkpoints)"
            )
        self.run, self.resuming = choose_run(config, self.run_dir, self.resume)
        placement = self.placement = choose_strategy(config.strategy)
        self.emit(
            "placement",
            text=placement.describe(),
            replicas=placement.replicas,
            worker=placement.worker_index,
            workers=placement.num_workers,
        )
        self.config, self.info, self.splits, self.pipes = _data(stack, config, placement, self.emit)
        self.clock["data"] = time.perf_counter()

    def build(self) -> None:
        """The model; the run directory is written only once it builds."""
        config, splits, pipes = self.config, self.splits, self.pipes
        model, notes = build_model(
            config, splits.shape, self.info.class_names, self.placement, pipes.steps
        )
        splits.notes.update(notes)
        if self.hooks.wrap_model is not None:
            model = self.hooks.wrap_model(model, self.placement)
            compile_model(model, config, pipes.steps, self.placement)
        self.model = model

    def record_kind(self) -> None:
        """The run's kind and parent in run.json (`runs list` shows them)."""
        kind, parent = self.hooks.kind, self.hooks.parent
        if kind == "train" and self.config.init_from:
            kind, parent = "fine-tune", self.config.init_from
        if self.is_chief:
            self.run.update_state(kind=kind, parent=parent)

    def fit(self, state: dict, own) -> None:
        self.emit("run", path=str(self.run.path), resuming=self.resuming)
        monitor = "val_accuracy" if self.pipes.val is not None else "accuracy"
        self.callbacks = make_callbacks(self, state, own, monitor)
        start = self.clock["build"] = time.perf_counter()
        self.history = fit(
            self.model, self.pipes, self.callbacks, self.config, self.placement, self.run
        )
        self.clock["fit"] = time.perf_counter()
        self.train_seconds = self.clock["fit"] - start

    def report(self, state: dict) -> dict:
        """The best weights restored and tested; metrics.json, assembled here only."""
        model, pipes, splits, run = self.model, self.pipes, self.splits, self.run
        splits.notes.update(self.callbacks.notes)
        splits.notes.update(
            finish_model(model, pipes, self.callbacks, run, self.config, self.placement)
        )
        first_step = self.callbacks.progress.first_step_done
        metrics = {
            **test_report(model, pipes, self.placement),
            "stage_seconds": self.stage_seconds(),
            "test_examples": size(splits.test),
            **_session(self.history, state, pipes, size(splits.train), self.train_seconds),
            "seconds_to_first_step": _since(self.clock["tensorflow"], first_step),
            "best_epoch": run.read_state().get("best_epoch") if self.is_chief else None,
            **_what_trained(self.config, pipes, self.placement, trained_model(model)),
            "notes": splits.final_notes(),
        }
        if self.is_chief:
            write_json(run.metrics, metrics)
        return metrics

    def stage_seconds(self) -> dict:
        """Where this command's time went, stage by stage (benchmarks/mnist_recipes.py); the
        validation passes inside fit are counted apart from the training steps."""
        c, progress = self.clock, self.callbacks.progress
        first = progress.first_step_done or c["fit"]
        validation = progress.validation_seconds
        spans = {
            "tensorflow_import": c["tensorflow"] - c["start"],
            "data": c["data"] - c["tensorflow"],
            "build": c["build"] - c["data"],
            "first_step": first - c["build"],
            "steps": c["fit"] - first - validation,
            "validation": validation,
            "test_and_save": time.perf_counter() - c["fit"],
        }
        return {k: round(v, 3) for k, v in spans.items()}


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
    config = adapt_to_data(
        config, size(splits.train), splits.shape, info.num_classes, placement.replicas
    )
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
