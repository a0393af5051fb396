"""The training loop: tfvision's callbacks in their order, and model.fit (in two phases
with --freeze-backbone)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfvision_cli import interrupts
from tfvision_cli.compat.keras_multi_worker import multi_worker_fit
from tfvision_cli.runs import RunDir
from tfvision_cli.training.data import Pipelines
from tfvision_cli.training.model import compile_model, frozen_backbone, open_length
from tfvision_cli.training.run import Diverged, LostWorker


@dataclass
class TrainCallbacks:
    """tfvision's callbacks in named slots, run in this order at every epoch's end:

    guards: stop on Ctrl-C/SIGTERM and on a NaN loss, before anything is written;
    writers: the best model, history.csv, TensorBoard logs, progress events;
    extra: the caller's (tune's trial pruning, prune's masks): after the epoch's files;
    commit: the Backup, which commits the epoch only after everything above ran, so that a
        kill in between makes the resumed run redo the epoch;
    after: what only decides whether to go on (--early-stopping), once the epoch is kept."""

    guards: list
    writers: list
    extra: list
    commit: list
    after: list
    best: object  # BestModel
    progress: object  # ProgressEvents
    nan_guard: object  # StopOnNaN
    logger: object  # ResumableCSVLogger
    notes: dict = field(default_factory=dict)  # what happened, for metrics.json

    @property
    def all(self) -> list:
        return [*self.guards, *self.writers, *self.extra, *self.commit, *self.after]


def make_callbacks(session, state: dict, own: RunDir, monitor: str) -> TrainCallbacks:
    """tfvision's callbacks for a TrainSession (training/session.py), and the caller's extra
    ones in their slot."""
    import keras

    from tfvision_cli.training.callbacks import (
        Backup,
        BestModel,
        EpochTensorBoard,
        ProgressEvents,
        ResumableCSVLogger,
        StopOnInterrupt,
        StopOnNaN,
    )

    config, run, is_chief = session.config, session.run, session.placement.is_chief

    def saved(epoch: int, value: float) -> None:
        if is_chief:
            run.update_state(best_epoch=epoch, best_value=value, monitor=monitor)

    nan_guard = StopOnNaN()
    keep_from = session.hooks.keep_from_epoch
    best = BestModel(run.model, monitor, state.get("best_value"), is_chief, saved, keep_from)
    progress = ProgressEvents(session.emit, config.epochs, session.pipes.steps)
    resuming = session.resuming and is_chief
    logger = ResumableCSVLogger(str(own.history), resuming, Backup.epochs_done(run.backup))
    restore = None if is_chief else str(run.backup)
    return TrainCallbacks(
        guards=[StopOnInterrupt(), nan_guard],
        writers=[best, logger, EpochTensorBoard(str(own.logs)), progress]
        + session.tracking.callbacks,
        extra=list(session.hooks.callbacks),
        commit=[Backup(str(own.backup), nan_guard, restore_from=restore)],
        after=[keras.callbacks.EarlyStopping(monitor, patience=config.early_stopping, mode="max")]
        if config.early_stopping
        else [],
        best=best,
        progress=progress,
        nan_guard=nan_guard,
        logger=logger,
    )


def fit(model, pipelines: Pipelines, callbacks: TrainCallbacks, config, placement, run) -> dict:
    """model.fit (in two phases with --freeze-backbone: the backbone frozen, then all layers);
    a lost worker and a NaN loss become errors that say what is kept. Returns the history of
    the epochs this session trained."""
    from tfvision_cli.training.callbacks import Backup

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
    if interrupts.requested.is_set():
        raise KeyboardInterrupt  # asked for during fit, and swallowed where it landed
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
        with multi_worker_fit(placement.strategy), open_length():
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


def best_value(values, previous):
    candidates = [float(v) for v in (values or [])] + ([previous] if previous is not None else [])
    return round(max(candidates), 6) if candidates else None
