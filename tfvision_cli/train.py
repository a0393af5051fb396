"""train(config) -> TrainResult: data, model, fit, evaluate, in the keras-io way."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli import __version__
from tfvision_cli.config import TrainConfig, to_yaml
from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.runs import (
    RunDir,
    new_run_dir,
    remove_stale_temps,
    write_json,
    write_text_atomic,
)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict


@dataclass
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    notes: dict


def load_splits(dataset, config: TrainConfig) -> Splits:
    """Train/validation/test arrays. Validation comes out of train (seeded, stratified) unless
    the dataset has its own; the test split is never used to choose anything."""
    from tfvision_cli.data.catalog import stratified_split

    notes = {}
    x, y = dataset.arrays("train") if dataset.has_split("train") else (None, None)
    if x is None:
        raise UsageError(f"dataset {dataset.info.name} has no train split")
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
    return Splits((x, y), val, test, notes)


def _prepare_run(config: TrainConfig, run_dir: Path | None, resume: bool) -> tuple[RunDir, bool]:
    if run_dir is not None:
        run = RunDir(run_dir)
        if run.path.exists() and not run.exists() and any(run.path.iterdir()):
            raise UsageError(f"{run.path} exists and is not a tfvision run directory")
        return run, run.exists()
    if resume:
        raise UsageError("--resume needs a run: give --run-dir or use `latest`")
    return new_run_dir(config.dataset, config.model), False


def _setup_tensorflow(config: TrainConfig):
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


def train(
    config: TrainConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    on_event: Callable[..., None] | None = None,
) -> TrainResult:
    """Train config.model on config.dataset; write the run directory; return its metrics."""
    tf, keras = _setup_tensorflow(config)
    tf_imported = time.perf_counter()
    from tfvision_cli.callbacks import (
        Backup,
        BestModel,
        EpochTensorBoard,
        History,
        ProgressEvents,
        StopOnNaN,
    )
    from tfvision_cli.data.catalog import is_path_spec, open_dataset
    from tfvision_cli.data.pipeline import augmenter, flips_make_sense, make_dataset
    from tfvision_cli.distribute import choose_strategy, cluster_size
    from tfvision_cli.models.registry import create_model, get_entry
    from tfvision_cli.optim import make_optimizer

    emit = on_event or (lambda kind, **data: None)
    get_entry(config.model)  # an unknown model fails before any data is read
    if is_path_spec(config.dataset):  # the run must find its folder from any directory
        config.dataset = str(Path(config.dataset).expanduser().resolve())
    if run_dir is None and config.strategy in ("auto", "multi-worker") and cluster_size() > 1:
        raise UsageError(
            "multi-worker training needs --run-dir: the same folder on every worker, on storage "
            "they all see (the chief writes it, the others read its checkpoints)"
        )
    placement = choose_strategy(config.strategy)
    emit(
        "placement",
        text=placement.describe(),
        replicas=placement.replicas,
        worker=placement.worker_index,
        workers=placement.num_workers,
    )

    # Data
    dataset = open_dataset(
        config.dataset,
        data_dir=config.data_dir,
        image_size=tuple(config.image_size) if config.image_size else None,
    )
    if hasattr(dataset, "builder") and not dataset.builder.is_prepared():
        from tfvision_cli.data.tfds_source import download

        emit("download", name=config.dataset)
        download(config.dataset, config.data_dir)  # fails fast, with the offline hint
        dataset = open_dataset(
            config.dataset,
            data_dir=config.data_dir,
            image_size=tuple(config.image_size) if config.image_size else None,
        )
    info = dataset.info
    splits = load_splits(dataset, config)
    if info.extra.get("failures"):  # a raw folder's unreadable files, each named
        splits.notes["skipped_files"] = info.extra["failures"]
        emit("skipped", files=info.extra["failures"])
    shape, n_classes = tuple(int(d) for d in splits.train[0].shape[1:]), info.num_classes
    global_batch = config.batch_size * placement.replicas
    steps = math.ceil(len(splits.train[1]) / global_batch)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    augment = augmenter(
        config.augment, flips_make_sense(info.name, info.class_names, shape[2]), config.seed
    )
    train_ds = make_dataset(
        *splits.train,
        n_classes,
        global_batch,
        shuffle=True,
        seed=config.seed,
        augment=augment,
        repeat=config.steps_per_epoch is not None,
    )
    val_ds = make_dataset(*splits.val, n_classes, global_batch) if splits.val else None
    emit(
        "data",
        name=info.name,
        shape=shape,
        classes=n_classes,
        train=len(splits.train[1]),
        val=len(splits.val[1]) if splits.val else 0,
        test=len(splits.test[1]),
        global_batch=global_batch,
        steps=steps,
    )

    # Run directory
    run, resuming = _prepare_run(config, run_dir, resume)
    write = placement.is_chief
    state = run.read_state() if resuming else {}

    # Model
    with placement.strategy.scope():
        options = dict(config.model_options)
        if config.pretrained:
            options["pretrained"] = True
        model = create_model(config.model, shape, n_classes, **options)
        if placement.replicas > 1:
            _synchronize_batch_norm(model)
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

    # The run directory is written only once the model builds
    if write:
        run.path.mkdir(parents=True, exist_ok=True)
        for folder in (run.path, run.backup):  # what a killed session left half-written
            remove_stale_temps(folder)
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
    emit("run", path=str(run.path), resuming=resuming)

    # Train
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    nan_guard = StopOnNaN()

    def saved(epoch: int, value: float) -> None:
        if write:
            run.update_state(best_epoch=epoch, best_value=value, monitor=monitor)

    # Workers other than the chief restore from the chief's backup but write their own files
    # (backup, history, TensorBoard) to a temporary folder, removed when they finish.
    with _own_files(run, write, placement.worker_index) as own:
        best_model = BestModel(run.model, monitor, state.get("best_value"), write, saved)
        progress = ProgressEvents(emit, config.epochs, steps)
        # Backup comes last: it commits an epoch only after the model, history row and logs
        # of that epoch are written, so a kill in between makes the resumed run redo the epoch.
        callbacks = [
            nan_guard,
            best_model,
            History(str(own.history), resuming and write, Backup.epochs_done(run.backup)),
            EpochTensorBoard(str(own.logs)),
            progress,
            Backup(str(own.backup), nan_guard, restore_from=None if write else str(run.backup)),
        ]
        if config.early_stopping:
            callbacks.append(
                keras.callbacks.EarlyStopping(monitor, patience=config.early_stopping, mode="max")
            )
        start = time.perf_counter()
        try:
            history = model.fit(
                train_ds,
                epochs=config.epochs,
                validation_data=val_ds,
                steps_per_epoch=steps if config.steps_per_epoch else None,
                callbacks=callbacks,
                verbose=0,
                shuffle=False,
            )
        except KeyboardInterrupt:
            if write:
                run.update_state(status="interrupted")
            raise
        except (tf.errors.UnavailableError, tf.errors.CancelledError) as e:
            if placement.num_workers < 2:
                raise
            if write:
                run.update_state(status="interrupted")
            raise TfvisionError(
                "lost contact with another worker of the cluster "
                f"({type(e).__name__}); the epochs finished so far are kept in {run.path}",
                hint="start every worker again with the same command to resume",
            ) from None
        train_seconds = time.perf_counter() - start
        if nan_guard.bad_epoch is not None:
            if write:
                run.update_state(status="diverged")
            raise TfvisionError(
                f"the loss became NaN or infinite in epoch {nan_guard.bad_epoch}; training "
                f"stopped. The last good model and checkpoint are kept in {run.path}",
                hint=f"resume with a lower rate: tfvision train --run-dir {run.path} "
                f"--learning-rate {config.learning_rate / 10:g}",
            )

        # Evaluate the best epoch's weights (what model.keras holds) on the test split
        epochs_run = len(history.history.get("loss", []))
        if best_model.best_weights is not None:
            model.set_weights(best_model.best_weights)
        elif run.model.is_file():  # the best epoch was in an earlier session of a resumed run
            model.load_weights(run.model)
        test_ds = make_dataset(*splits.test, n_classes, global_batch)
        scores = model.evaluate(test_ds, verbose=0, return_dict=True)
        test_metrics = {
            "test_accuracy": round(float(scores["accuracy"]), 6),
            "test_loss": round(float(scores["ce"]), 6),
            "test_examples": int(len(splits.test[1])),
        }
        hist = history.history
        metrics = {
            "dataset": config.dataset,
            "model": config.model,
            **test_metrics,
            "val_accuracy": _best(hist.get("val_accuracy"), state.get("best_value")),
            "best_epoch": run.read_state().get("best_epoch") if write else None,
            "epochs": config.epochs,
            "epochs_this_session": epochs_run,
            "train_seconds": round(train_seconds, 3),
            "train_images_per_second": round(
                epochs_run * min(len(splits.train[1]), steps * global_batch) / train_seconds, 1
            )
            if train_seconds > 0 and epochs_run
            else None,
            # issue 6's start-up target: TensorFlow imported -> first training step finished
            "seconds_to_first_step": round(progress.first_step_done - tf_imported, 3)
            if progress.first_step_done
            else None,
            "global_batch_size": global_batch,
            "replicas": placement.replicas,
            "strategy": placement.kind,
            "params": int(model.count_params()),
            # equal on every worker of a multi-worker run: they trained one model
            "weights_sha256": weights_digest(model),
            "notes": splits.notes,
        }
        if write:
            write_json(run.metrics, metrics)
            run.update_state(status="completed")
        return TrainResult(run.path, metrics)


@contextlib.contextmanager
def _own_files(run: RunDir, write: bool, worker: int):
    if write:
        yield run
        return
    tmp = Path(tempfile.gettempdir())
    for old in tmp.glob(".tfvision-worker*.tmp-*"):  # left by killed workers
        remove_stale_temps(tmp, old.name)
    scratch = tmp / f".tfvision-worker{worker}.tmp-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    try:
        yield RunDir(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _synchronize_batch_norm(model) -> None:
    """With several replicas, BatchNorm normalises with the statistics of the global batch, so
    that its moving averages (and so every weight) stay identical on every replica and worker."""
    import keras

    def walk(layer):
        for sub in getattr(layer, "layers", []):
            yield sub
            yield from walk(sub)

    for layer in walk(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def weights_digest(model) -> str:
    """sha256 of every weight's bytes, in order: equal digests, identical models."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def _best(values, previous):
    candidates = [float(v) for v in (values or [])] + ([previous] if previous is not None else [])
    return round(max(candidates), 6) if candidates else None
