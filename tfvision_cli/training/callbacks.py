"""Keras callbacks of tfvision's own: progress events, the best model, a NaN guard."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import keras

from tfvision_cli import interrupts
from tfvision_cli.files import atomic_file, write_text_atomic
from tfvision_cli.models.io import save_model


class ProgressEvents(keras.callbacks.Callback):
    """Turns Keras's hooks into events for whoever prints (the core itself never prints).

    on_event(kind, **data) with kind "epoch_begin", "batch" or "epoch_end".
    """

    # Keras calls async-safe batch hooks from a helper thread, so that reading the logs does
    # not stall the training loop after every step.
    async_safe = True

    def __init__(self, on_event: Callable[..., None], epochs: int, steps: int):
        super().__init__()
        self.on_event, self.epochs, self.steps = on_event, epochs, steps
        self._start = 0.0
        self.first_step_done: float | None = None  # perf_counter() when the first step ended
        self.validation_seconds = 0.0  # the validation passes inside fit, all epochs
        self._test_start = 0.0

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation_seconds += time.perf_counter() - self._test_start

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self.on_event("epoch_begin", epoch=epoch + 1, epochs=self.epochs, steps=self.steps)

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_done is None:
            self.first_step_done = time.perf_counter()
        self.on_event("batch", step=batch + 1, steps=self.steps, logs=_floats(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.on_event(
            "epoch_end",
            epoch=epoch + 1,
            epochs=self.epochs,
            logs=_floats(logs),
            seconds=time.perf_counter() - self._start,
        )


def _floats(logs) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


class BestModel(keras.callbacks.Callback):
    """Saves model.keras (atomically) whenever the monitored metric improves, and keeps the
    best weights in memory so the run can be evaluated without reloading (or retracing)."""

    def __init__(
        self,
        path: Path,
        monitor: str,
        best: float | None,
        is_chief: bool,
        on_save: Callable[[int, float], None],
        first_epoch: int = 1,
    ):
        super().__init__()
        self.path, self.monitor, self.best, self.is_chief = path, monitor, best, is_chief
        self.on_save, self.first_epoch = on_save, first_epoch
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(float(value)) or epoch + 1 < self.first_epoch:
            return
        value = float(value)
        if self.best is None or value > self.best:
            self.best = value
            self.best_weights = self.model.get_weights()
            if self.is_chief:
                save_model(self.model, self.path)
            self.on_save(epoch + 1, value)


class TrialPruning(keras.callbacks.Callback):
    """Reports each epoch's metric to an Optuna trial and stops a trial its pruner finds
    hopeless at that epoch's end (`tfvision tune --pruner`)."""

    def __init__(self, trial, metric: str):
        super().__init__()
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True


class StopOnInterrupt(keras.callbacks.Callback):
    """Ends training at the next step once Ctrl-C or SIGTERM was asked for, even if the
    KeyboardInterrupt itself was swallowed where it landed (fit() then raises it again)."""

    async_safe = True  # see ProgressEvents

    def on_train_batch_end(self, batch, logs=None):
        if interrupts.requested.is_set():
            self.model.stop_training = True


class StopOnNaN(keras.callbacks.Callback):
    """Stops training when the loss stops being finite and remembers where."""

    async_safe = True  # see ProgressEvents

    def __init__(self):
        super().__init__()
        self.bad_epoch: int | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_epoch = self._epoch
            self.model.stop_training = True


class Backup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that never backs up weights from an epoch whose loss went non-finite,
    and whose files are written under temporary names and renamed into place, so that a kill
    during a save leaves the previous epoch's backup whole.

    restore_from: another backup folder to restore from (a multi-worker run's non-chief
    workers restore the chief's backup and write their own to a scratch folder).
    """

    # It saves at epoch ends only: its batch hook does nothing and may run asynchronously.
    async_safe = True

    def __init__(self, backup_dir: str, nan_guard: StopOnNaN, restore_from: str | None = None):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.nan_guard = nan_guard
        self.restore_from = restore_from

    @staticmethod
    def epochs_done(backup_dir: str | Path) -> int:
        """How many epochs the backup in backup_dir holds (0 when there is none)."""
        try:
            return int(
                json.loads((Path(backup_dir) / "training_metadata.json").read_text())["epoch"]
            )
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def on_train_begin(self, logs=None):
        own = self.backup_dir
        if self.restore_from is not None:
            self._point_at(self.restore_from)
        try:
            with warnings.catch_warnings():
                # after --freeze-backbone's first phase the optimizer is a new one: the saved
                # optimizer state is of the old one and is rightly not loaded
                warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
                super().on_train_begin(logs)
        finally:
            self._point_at(own)

    def _point_at(self, folder: str) -> None:
        self._weights_path = os.path.join(folder, "latest.weights.h5")
        self._training_metadata_path = os.path.join(folder, "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.bad_epoch is None:
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        with atomic_file(Path(self._weights_path), suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp, overwrite=True)
        # Weights first: a kill between the two renames repeats one epoch, never skips one.
        write_text_atomic(
            self._training_metadata_path, json.dumps({"epoch": self._current_epoch, "batch": 0})
        )


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """TensorBoard with epoch summaries only (no graph, no profiling, no per-step scalars).

    Its batch hooks then do nothing, so it is marked async-safe: one callback that is not makes
    Keras wait for every step's logs before dispatching the next step.
    """

    async_safe = True

    def __init__(self, log_dir: str):
        super().__init__(log_dir, write_graph=False, profile_batch=0, update_freq="epoch")


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """CSVLogger that, when a run resumes, first drops the rows of epochs the backup does not
    hold (an epoch that diverged, or one that ended just before a kill), so that history.csv
    has one row per epoch of the model being trained. List it before Backup: an epoch's row is
    then written before the backup commits that epoch.
    """

    def __init__(self, filename: str, append: bool, done_epochs: int):
        super().__init__(filename, append=append)
        self.done_epochs = done_epochs

    def on_train_begin(self, logs=None):
        done = self.done_epochs
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                rows = list(csv.reader(f))
            if rows and rows[0] and rows[0][0] == "epoch":
                kept = [rows[0]] + [r for r in rows[1:] if r and _int(r[0]) < done]
                if len(kept) < len(rows):
                    out = io.StringIO()
                    csv.writer(out, lineterminator="\n").writerows(kept)
                    write_text_atomic(Path(self.filename), out.getvalue())
        super().on_train_begin(logs)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 1 << 30  # an unreadable row goes
