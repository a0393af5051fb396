"""The stages of a training run, each small and named, for `train` and the commands that reuse
parts of it (tune, distill, prune): open data, split, pipelines, model, the run directory's
lifecycle, callbacks, fit, the test report. Keras's own Trainer/callbacks split is the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfvision_cli import __version__, finetune
from tfvision_cli.compat.keras_multi_worker import multi_worker_fit
from tfvision_cli.config import TrainConfig, to_yaml
from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import (
    make_temp_dir,
    remove_stale_temp_dirs,
    remove_stale_temp_files,
    write_json,
    write_text_atomic,
)
from tfvision_cli.runs import RunDir, new_run_dir

Emit = Callable[..., None]


class Diverged(TfvisionError):
    """The loss became NaN or infinite."""


class LostWorker(TfvisionError):
    """Another worker of a multi-worker cluster went away."""


def setup_tensorflow(config: TrainConfig):
    """Import TensorFlow and Keras; seeds, determinism and precision policy from config."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    import keras

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.mixed_precision:
        gpus = tf.config.list_physical_devices("GPU")
        keras.mixed_precision.set_global_policy("mixed_float16" if gpus else "mixed_bfloat16")
    return tf, keras


def resolve_paths(config: TrainConfig) -> TrainConfig:
    """config with the dataset folder and model files made absolute, so that the run finds
    them from any directory (resuming, evaluating, exporting)."""
    from tfvision_cli.data.catalog import is_path_spec

    def absolute(text: str) -> str:
        return str(Path(text).expanduser().resolve())

    changes = {}
    if is_path_spec(config.dataset):
        changes["dataset"] = absolute(config.dataset)
    if config.model.endswith(".keras"):
        changes["model"] = absolute(config.model)
    if config.init_from:  # the file itself: `latest` would mean another run tomorrow
        changes["init_from"] = absolute(str(finetune.source_file(config.init_from)))
    return dataclasses.replace(config, **changes)


def open_data(config: TrainConfig, emit: Emit):
    """The dataset, downloaded through TFDS first when it is not prepared yet."""
    from tfvision_cli.data.catalog import open_dataset

    def open_it():
        size = tuple(config.image_size) if config.image_size else None
        return open_dataset(config.dataset, data_dir=config.data_dir, image_size=size)

    dataset = open_it()
    if not dataset.is_available():
        emit("download", name=config.dataset)
        dataset.ensure_available()  # fails fast, with the offline hint
        dataset = open_it()
    return dataset


@dataclass
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    notes: dict


def load_splits(dataset, config: TrainConfig) -> Splits:
    """Train/validation/test arrays. Validation comes out of train (seeded, stratified) unless
    the dataset has its own; the test split is never used to choose anything."""
    from tfvision_cli.data.base import stratified_split

    if not dataset.has_split("train"):
        raise UsageError(f"dataset {dataset.info.name} has no train split")
    notes = {}
    x, y = dataset.arrays("train")
    if dataset.has_split("test"):
        test = dataset.arrays("test")
    else:
        parts = stratified_split(y, {"test": 0.1}, seed=0)
        test = (x[parts["test"]], y[parts["test"]])
        x, y = x[parts["train"]], y[parts["train"]]
        notes["test_split"] = "10% of train (stratified, seed 0): the dataset has no test split"
    val = None
    if dataset.has_split("validation"):
        val = dataset.arrays("validation")
        notes["validation"] = "the dataset's own validation split"
    elif config.validation_split > 0:
        parts = stratified_split(y, {"validation": config.validation_split}, config.seed)
        val = (x[parts["validation"]], y[parts["validation"]])
        x, y = x[parts["train"]], y[parts["train"]]
        notes["validation"] = (
            f"{config.validation_split:.0%} of train (stratified, seed {config.seed})"
        )
    failures = dataset.info.extra.get("failures")
    if failures:  # a raw folder's unreadable files, each named
        notes["skipped_files"] = failures
    return Splits((x, y), val, test, notes)


@dataclass
class Pipelines:
    train: object  # tf.data.Dataset of (uint8 images, one-hot labels)
    val: object | None
    test: object
    global_batch: int
    steps: int  # training steps per epoch
    class_weight: dict[int, float] | None = None
    repeated: bool = False  # the training data repeats: epochs are `steps` long


def build_pipelines(splits: Splits, info, config: TrainConfig, replicas: int) -> Pipelines:
    """tf.data pipelines batched with the global batch (per-replica batch x replicas)."""
    from tfvision_cli.data.pipeline import augmenter, flips_make_sense, make_dataset

    n_classes = info.num_classes
    shape = splits.train[0].shape[1:]
    global_batch = config.batch_size * replicas
    steps = math.ceil(len(splits.train[1]) / global_batch)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    augment = augmenter(
        config.augment, flips_make_sense(info.name, info.class_names, shape[2]), config.seed
    )
    train = make_dataset(
        *splits.train,
        n_classes,
        global_batch,
        shuffle=True,
        seed=config.seed,
        augment=augment,
        repeat=config.steps_per_epoch is not None,
    )
    val = make_dataset(*splits.val, n_classes, global_batch) if splits.val else None
    test = make_dataset(*splits.test, n_classes, global_batch)
    weights = (
        class_weights(splits.train[1], n_classes) if config.class_weight == "balanced" else None
    )
    return Pipelines(
        train, val, test, global_batch, steps, weights, config.steps_per_epoch is not None
    )


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """'balanced' weights, as scikit-learn's: total / (classes x count of the class)."""
    counts = np.bincount(labels, minlength=n_classes)
    return {c: float(len(labels) / (n_classes * n)) if n else 0.0 for c, n in enumerate(counts)}


# Every dataset gets at least the optimizer steps the default recipe takes on MNIST (4 epochs of
# 422 steps = 1,688): a smaller dataset gets more epochs of fewer steps, not fewer steps.
STEP_BUDGET = 1600
EPOCHS_RANGE = (4, 40)


def choose_epochs(config: TrainConfig, n_train: int, replicas: int) -> TrainConfig:
    """config with epochs decided from the data when none were given (config.epochs None)."""
    if config.epochs is not None:
        return config
    low, high = EPOCHS_RANGE
    steps = math.ceil(n_train / (config.batch_size * replicas))
    if config.steps_per_epoch:  # a quick trial keeps its few steps
        return dataclasses.replace(config, epochs=low)
    epochs = min(high, max(low, math.ceil(STEP_BUDGET / max(steps, 1))))
    return dataclasses.replace(config, epochs=epochs)


def describe_data(info, splits: Splits, pipes: Pipelines) -> dict:
    """What the run trains on, for the "data" event."""
    return {
        "name": info.name,
        "shape": tuple(int(d) for d in splits.train[0].shape[1:]),
        "classes": info.num_classes,
        "train": len(splits.train[1]),
        "val": len(splits.val[1]) if splits.val else 0,
        "test": len(splits.test[1]),
        "global_batch": pipes.global_batch,
        "steps": pipes.steps,
    }


def build_model(config: TrainConfig, shape, n_classes: int, placement, steps: int):
    """The model (from the registry, or a .keras file), started from --init-from's weights if
    given, compiled inside the strategy's scope. Returns (model, notes for metrics.json)."""
    from tfvision_cli.models.registry import create_model

    notes = {}
    with placement.strategy.scope():
        options = dict(config.model_options)
        if config.pretrained:
            options["pretrained"] = True
        if finetune.is_model_file(config.model):
            model = finetune.model_from_file(config.model, shape, n_classes)
        else:
            model = create_model(config.model, shape, n_classes, **options)
        if config.init_from:
            notes = finetune.init_weights(model, config.init_from)
        if placement.replicas > 1:
            synchronize_batch_norm(model)
    compile_model(model, config, steps, placement)
    return model, notes


def compile_model(model, config: TrainConfig, steps: int, placement) -> None:
    """Compile (again, after freezing or unfreezing layers) with a fresh optimizer."""
    import keras

    from tfvision_cli.optim import make_optimizer

    with placement.strategy.scope():
        model.compile(
            optimizer=make_optimizer(config, steps, placement.replicas),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            # "ce": cross-entropy without label smoothing, the loss reported for the test split
            metrics=[
                keras.metrics.CategoricalAccuracy(name="accuracy"),
                keras.metrics.CategoricalCrossentropy(name="ce"),
            ],
            steps_per_execution=config.steps_per_execution,
            jit_compile=config.xla,
        )


@contextlib.contextmanager
def frozen_backbone(model) -> Iterator[list[str]]:
    """Within the block, the backbone does not train: the keras.applications model nested in
    model, else every weighted layer before the last (the head). Yields the frozen names."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    frozen = nested or [layer for layer in model.layers if layer.weights][:-1]
    saved = [layer.trainable for layer in frozen]
    for layer in frozen:
        layer.trainable = False
    try:
        yield [layer.name for layer in frozen]
    finally:
        for layer, trainable in zip(frozen, saved, strict=True):
            layer.trainable = trainable


def synchronize_batch_norm(model) -> None:
    """With several replicas, BatchNorm normalises with the statistics of the global batch, so
    that its moving averages (and so every weight) stay identical on every replica and worker."""
    import keras

    for layer in _walk(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def _walk(layer):
    """Every layer inside layer, nested models included."""
    for sub in getattr(layer, "layers", []):
        yield sub
        yield from _walk(sub)


def choose_run(config: TrainConfig, run_dir: Path | None, resume: bool) -> tuple[RunDir, bool]:
    """The run directory and whether it resumes one. Only a folder whose run.json tfvision
    wrote is a run; any other non-empty folder is refused, never written into."""
    if run_dir is None:
        if resume:
            raise UsageError("--resume needs a run: give --run-dir or use `latest`")
        return new_run_dir(config.dataset, config.model), False
    run = RunDir(run_dir)
    if run.path.is_symlink() or (run.path.exists() and not run.path.is_dir()):
        raise UsageError(f"--run-dir {run.path} is not a folder")
    if run.exists():
        run.read_state()  # a damaged run.json is an error, not a fresh start
        return run, True
    if run.path.exists() and {p.name for p in run.path.iterdir()} - {run.lock_file.name}:
        raise UsageError(
            f"{run.path} exists and is not a tfvision run directory (no run.json); "
            "refusing to write into it",
            hint="give a new or empty folder as --run-dir",
        )
    return run, False


@contextlib.contextmanager
def run_lifecycle(
    run: RunDir, resuming: bool, is_chief: bool, config: TrainConfig, info, shape
) -> Iterator[dict]:
    """The run directory from start to end: locked for the whole block, its files written,
    its status recorded (running, then completed / interrupted / diverged / failed).

    Yields the state of the run before this session (empty for a new run). Only the chief
    (is_chief=True) writes; the other workers of a cluster read the chief's files.
    """
    if not is_chief:
        yield run.read_state() if resuming else {}
        return
    with run.lock():
        if not resuming and run.exists():
            raise TfvisionError(f"another process started a run in {run.path} meanwhile")
        state = run.read_state() if resuming else {}
        for folder in (run.path, run.backup):  # what a killed session left half-written
            remove_stale_temp_files(folder)
        write_text_atomic(run.config, to_yaml(config))
        write_json(
            run.classes,
            {
                "class_names": info.class_names,
                "input_shape": list(shape),
                "dataset": config.dataset,
                "dataset_source": info.source,
            },
        )
        run.update_state(
            created=state.get("created", time.time()),
            status="running",
            dataset=config.dataset,
            model=config.model,
            tfvision=__version__,
        )
        try:
            yield state
        except (KeyboardInterrupt, LostWorker):
            run.update_state(status="interrupted")
            raise
        except Diverged:
            run.update_state(status="diverged")
            raise
        except BaseException:
            run.update_state(status="failed")
            raise
        run.update_state(status="completed")


@contextlib.contextmanager
def own_files(run: RunDir, is_chief: bool, worker: int) -> Iterator[RunDir]:
    """Where this process writes its backup, history and logs: the run itself for the chief;
    for another worker a marked scratch folder, removed when it finishes."""
    if is_chief:
        yield run
        return
    tmp, name = Path(tempfile.gettempdir()), f"tfvision-worker{worker}"
    remove_stale_temp_dirs(tmp, name)  # left by killed workers
    scratch = make_temp_dir(tmp, name)
    try:
        yield RunDir(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class TrainCallbacks:
    all: list
    best: object  # BestModel
    progress: object  # ProgressEvents
    nan_guard: object  # StopOnNaN
    logger: object  # ResumableCSVLogger
    notes: dict = field(default_factory=dict)  # what happened, for metrics.json


def make_callbacks(
    config: TrainConfig,
    run: RunDir,
    own: RunDir,
    resuming: bool,
    is_chief: bool,
    state: dict,
    monitor: str,
    steps: int,
    emit: Emit,
) -> TrainCallbacks:
    """tfvision's callbacks in the order that keeps a run resumable after any kill."""
    import keras

    from tfvision_cli.callbacks import (
        Backup,
        BestModel,
        EpochTensorBoard,
        ProgressEvents,
        ResumableCSVLogger,
        StopOnNaN,
    )

    def saved(epoch: int, value: float) -> None:
        if is_chief:
            run.update_state(best_epoch=epoch, best_value=value, monitor=monitor)

    nan_guard = StopOnNaN()
    best = BestModel(run.model, monitor, state.get("best_value"), is_chief, saved)
    progress = ProgressEvents(emit, config.epochs, steps)
    logger = ResumableCSVLogger(
        str(own.history), resuming and is_chief, Backup.epochs_done(run.backup)
    )
    # Backup comes last: it commits an epoch only after the model, history row and logs of
    # that epoch are written, so a kill in between makes the resumed run redo the epoch.
    callbacks = [
        nan_guard,
        best,
        logger,
        EpochTensorBoard(str(own.logs)),
        progress,
        Backup(str(own.backup), nan_guard, restore_from=None if is_chief else str(run.backup)),
    ]
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor, patience=config.early_stopping, mode="max")
        )
    return TrainCallbacks(callbacks, best, progress, nan_guard, logger)


def fit(model, pipelines: Pipelines, callbacks: TrainCallbacks, config, placement, run) -> dict:
    """model.fit (in two phases with --freeze-backbone: the backbone frozen, then all layers);
    a lost worker and a NaN loss become errors that say what is kept. Returns the history of
    the epochs this session trained."""
    from tfvision_cli.callbacks import Backup

    history: dict[str, list] = {}
    frozen = min(config.freeze_backbone, config.epochs)
    if frozen and Backup.epochs_done(run.backup) < frozen:
        with frozen_backbone(model) as names:
            compile_model(model, config, pipelines.steps, placement)
            _merge(history, _fit(model, pipelines, callbacks, frozen, placement, run))
        callbacks.notes["frozen_backbone"] = {"epochs": frozen, "layers": names}
        compile_model(model, config, pipelines.steps, placement)  # every layer, a new optimizer
        callbacks.logger.append = True  # the second phase adds to history.csv
        callbacks.logger.done_epochs = frozen
    if not model.stop_training and callbacks.nan_guard.bad_epoch is None:
        _merge(history, _fit(model, pipelines, callbacks, config.epochs, placement, run))
    if callbacks.nan_guard.bad_epoch is not None:
        raise Diverged(
            f"the loss became NaN or infinite in epoch {callbacks.nan_guard.bad_epoch}; "
            f"training stopped. The last good model and checkpoint are kept in {run.path}",
            hint=f"resume with a lower rate: tfvision train --run-dir {run.path} "
            f"--learning-rate {config.learning_rate / 10:g}",
        )
    return history


def _fit(model, pipelines: Pipelines, callbacks: TrainCallbacks, epochs: int, placement, run):
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    try:
        with multi_worker_fit(placement.strategy):
            return model.fit(
                pipelines.train,
                epochs=epochs,
                validation_data=pipelines.val,
                steps_per_epoch=pipelines.steps if pipelines.repeated else None,
                callbacks=callbacks.all,
                verbose=0,
                shuffle=False,
                class_weight=pipelines.class_weight,
            ).history
    except (tf.errors.UnavailableError, tf.errors.CancelledError) as e:
        if placement.num_workers < 2:
            raise
        raise LostWorker(
            "lost contact with another worker of the cluster "
            f"({type(e).__name__}); the epochs finished so far are kept in {run.path}",
            hint="start every worker again with the same command to resume",
        ) from None


def _merge(history: dict, more: dict) -> None:
    for key, values in more.items():
        history.setdefault(key, []).extend(values)


# Below this many optimizer steps, BatchNorm's moving statistics (an exponential average over
# the last ~1/(1-momentum) steps of fast-changing weights) do not describe the final weights: a
# 20-step trial scored 0.11 on MNIST's test split with them, 0.78 in training mode.
SHORT_RUN_STEPS = 1000
RECALIBRATION_BATCHES = 50


def best_weights(model, callbacks: TrainCallbacks, run: RunDir) -> None:
    """Put the best epoch's weights (what model.keras holds) into model."""
    if callbacks.best.best_weights is not None:
        model.set_weights(callbacks.best.best_weights)
    elif run.model.is_file():  # the best epoch was in an earlier session of a resumed run
        model.load_weights(run.model)


def recalibrate_batch_norm(model, batches) -> int:
    """Replace every BatchNorm layer's moving mean and variance by their average over batches
    of training data run through the final weights ("precise BN"); returns the batches used.
    Nothing else changes: no gradient is taken."""
    import keras

    layers = [layer for layer in _walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    used = seen = 0
    try:
        for images, _ in batches:
            n = int(images.shape[0])
            for layer in layers:  # a running average, each batch weighed by its size
                layer.momentum = seen / (seen + n)
            model(images, training=True)
            seen += n
            used += 1
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    return used


def finish_model(model, pipelines: Pipelines, callbacks, run: RunDir, config, placement) -> dict:
    """The model to keep: the best epoch's weights, with BatchNorm statistics recomputed after a
    short run when that does not make the validation accuracy worse (model.keras is saved
    again with them). Returns notes for metrics.json."""
    from tfvision_cli.models.io import save_model

    best_weights(model, callbacks, run)
    if config.epochs * pipelines.steps >= SHORT_RUN_STEPS or placement.replicas > 1:
        return {}
    # the monitored data: validation, else training batches (never the test split)
    reference = pipelines.val or pipelines.train.take(RECALIBRATION_BATCHES)
    kept = model.get_weights()
    before = _accuracy(model, reference)
    used = recalibrate_batch_norm(model, pipelines.train.take(RECALIBRATION_BATCHES))
    if not used:
        return {}
    after = _accuracy(model, reference)
    note = {"batch_norm_recalibration": {"batches": used, "before": before, "after": after}}
    if after < before:
        model.set_weights(kept)
        note["batch_norm_recalibration"]["kept"] = False
        return note
    note["batch_norm_recalibration"]["kept"] = True
    if placement.is_chief and run.model.is_file():
        save_model(model, run.model)
    return note


def _accuracy(model, batches) -> float:
    return round(float(model.evaluate(batches, verbose=0, return_dict=True)["accuracy"]), 6)


def test_report(model, pipelines: Pipelines, placement) -> dict:
    """The model evaluated on the test split."""
    with multi_worker_fit(placement.strategy):
        scores = model.evaluate(pipelines.test, verbose=0, return_dict=True)
    return {
        "test_accuracy": round(float(scores["accuracy"]), 6),
        "test_loss": round(float(scores["ce"]), 6),
    }


def weights_digest(model) -> str:
    """sha256 of every weight's bytes, in order: equal digests, identical models."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def best_value(values, previous):
    candidates = [float(v) for v in (values or [])] + ([previous] if previous is not None else [])
    return round(max(candidates), 6) if candidates else None
