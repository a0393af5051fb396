"""Where a run's results go beside its folder: TensorBoard's HParams dashboard (always) and
MLflow (`--track mlflow`, or TFVISION_TRACK=mlflow).

HParams are written with TensorBoard's own summary API (tensorboard.plugins.hparams.api), not
the Keras-2 callback: the session's hyperparameters when it starts, its final metrics (test
accuracy and loss, best validation accuracy) when it ends, in the run's logs/ folder beside
the Keras TensorBoard scalars, so `tfvision board STUDY` lines up a study's trials.

MLflow is reached through its client (MlflowClient) and the tracking URI MLflow resolves
itself (MLFLOW_TRACKING_URI, else its local default store); MLflow's own Keras autologging is
not used (full Keras 3 support is still open upstream: mlflow/mlflow issue 10775). A tune study is
a parent MLflow run with one child run per trial. The MLflow run id is kept in run.json, so a
resumed run goes on logging into the same MLflow run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tfvision_cli.errors import UsageError

TRACKERS = ("auto", "none", "mlflow")
ENV = "TFVISION_TRACK"
EXPERIMENT = "tfvision"  # MLflow's experiment unless MLFLOW_EXPERIMENT_NAME says another
# What a finished run hands MLflow besides its numbers (the pictures are every *.png)
ARTIFACTS = ("metrics.json", "history.csv", "config.yaml", "classes.json", "model.keras")


def chosen(track: str) -> str:
    """--track as asked: auto means $TFVISION_TRACK, or none."""
    if track != "auto":
        return track
    value = os.environ.get(ENV, "").strip().lower() or "none"
    if value not in TRACKERS[1:]:
        raise UsageError(f"{ENV}={value!r} is not a tracker. One of: none, mlflow")
    return value


def hparams_of(config) -> dict:
    """A training's hyperparameters as scalars (what TensorBoard and MLflow take): lists and
    mappings as text, unset values left out."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None or f.name in ("track",):
            continue
        if isinstance(value, bool | int | float | str):
            out[f.name] = value
        else:
            out[f.name] = str(value)
    return out


def final_scalars(metrics: dict) -> dict:
    """The numbers of metrics.json that say how a run ended."""
    keys = {
        "test_accuracy": "test_accuracy",
        "test_loss": "test_loss",
        "val_accuracy": "best_val_accuracy",
        "train_seconds": "train_seconds",
    }
    return {
        name: float(metrics[k])
        for k, name in keys.items()
        if isinstance(metrics.get(k), int | float)
    }


def write_hparams(logs: Path, name: str, hparams: dict) -> None:
    """The session's hyperparameters for TensorBoard's HParams dashboard."""
    from tensorboard.plugins.hparams import api as hp

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    with tf.summary.create_file_writer(str(logs)).as_default():
        hp.hparams(hparams, trial_id=name)


def write_final(logs: Path, scalars: dict) -> None:
    """The run's final metrics as scalars in logs/ (the HParams dashboard's metric columns)."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    with tf.summary.create_file_writer(str(logs)).as_default():
        for key, value in scalars.items():
            tf.summary.scalar(f"final/{key}", value, step=0)


class Mlflow:
    """One tfvision run as one MLflow run (a child of its study's run for a tune trial)."""

    def __init__(self, run, config, kind: str, parent_id: str | None):
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not ours
        self.client = MlflowClient()
        self.run, self.config, self.kind, self.parent_id = run, config, kind, parent_id
        self.run_id: str | None = None

    def start(self, resuming: bool) -> str:
        state = self.run.read_state()
        known = state.get("mlflow_run_id") if resuming else None
        if known and self._exists(known):
            self.run_id = known
            self.client.update_run(known, status="RUNNING")
        else:
            tags = {"tfvision.kind": self.kind, "tfvision.run_dir": str(self.run.path)}
            if self.parent_id:
                tags["mlflow.parentRunId"] = self.parent_id
            made = self.client.create_run(
                experiment_id(self.client), run_name=self.run.path.name, tags=tags
            )
            self.run_id = made.info.run_id
            log_params(self.client, self.run_id, hparams_of(self.config))
        self.run.update_state(mlflow_run_id=self.run_id)
        return self.run_id

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def epoch(self, epoch: int, logs: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, epoch)
            for key, value in logs.items()
            if isinstance(value, int | float)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, metrics: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final = [Metric(k, v, now, 0) for k, v in final_scalars(metrics).items()]
        self.client.log_batch(self.run_id, metrics=final)
        for path in self._artifacts():
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")

    def _artifacts(self) -> list[Path]:
        import tempfile

        folder = self.run.path
        found = [folder / name for name in ARTIFACTS if (folder / name).is_file()]
        found += sorted(p for p in folder.glob("*.png") if p.is_file())
        curves = _curves(folder, Path(tempfile.mkdtemp(prefix="tfvision-mlflow-")))
        return found + ([curves] if curves else [])

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


def _curves(folder: Path, scratch: Path) -> Path | None:
    """training_curves.png from history.csv, for MLflow (the run folder gets its own from
    `tfvision evaluate`)."""
    import csv

    from tfvision_cli import plots

    history = folder / "history.csv"
    if (folder / "training_curves.png").is_file() or not history.is_file():
        return None
    with open(history, newline="") as f:
        rows = list(csv.DictReader(f))
    return plots.training_curves(rows, scratch / "training_curves.png") if rows else None


def experiment_id(client) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=items[i : i + 100])


def check_tracker(track: str) -> list[str]:
    """What is wrong with --track (or $TFVISION_TRACK) before anything runs."""
    try:
        name = chosen(track)
    except UsageError as e:
        return [str(e)]
    if name == "mlflow" and importlib.util.find_spec("mlflow") is None:
        return [
            "--track mlflow needs MLflow, which is not installed: "
            "pip install -e '.[mlflow]' (or pip install mlflow)"
        ]
    return []


class Tracking:
    """A training session's trackers: HParams always, MLflow when asked for."""

    def __init__(self, session, is_chief: bool):
        self.session, self.is_chief = session, is_chief
        self.mlflow: Mlflow | None = None

    @property
    def callbacks(self) -> list:
        if self.mlflow is None:
            return []
        import keras

        mlflow = self.mlflow
        return [keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: mlflow.epoch(e, logs))]

    def start(self, own, resuming: bool) -> None:
        session = self.session
        config, run = session.config, session.run
        if not resuming:
            write_hparams(own.logs, run.path.name, hparams_of(config))
        if chosen(config.track) == "mlflow" and self.is_chief:
            hooks = session.hooks
            self.mlflow = Mlflow(run, config, hooks.kind, hooks.tracking_parent)
            run_id = self.mlflow.start(resuming)
            session.emit("tracking", text=f"MLflow run {run_id}", run_id=run_id)

    def finish(self, own, metrics: dict) -> None:
        write_final(own.logs, final_scalars(metrics))
        if self.mlflow is not None:
            self.mlflow.finish(metrics)


@contextlib.contextmanager
def tracked(session, own, resuming: bool) -> Iterator[Tracking]:
    """The trackers for one session; an MLflow run that ends by an error is marked FAILED,
    one ended by Ctrl-C or SIGTERM KILLED."""
    tracking = Tracking(session, session.is_chief)
    tracking.start(own, resuming)
    try:
        yield tracking
    except BaseException as e:
        if tracking.mlflow is not None:
            killed = isinstance(e, KeyboardInterrupt | SystemExit)
            with contextlib.suppress(Exception):
                tracking.mlflow.end("KILLED" if killed else "FAILED")
        raise


def study_run(optuna_study, study_dir: Path, track: str, settings: dict) -> str | None:
    """A tune study's parent MLflow run (one per study, shared by every worker through the
    study's storage), or None when the study is not tracked."""
    if chosen(track) != "mlflow":
        return None
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    known = optuna_study.user_attrs.get("mlflow_run_id")
    if known:
        return known
    client = MlflowClient()
    tags = {"tfvision.kind": "tune study", "tfvision.run_dir": str(study_dir)}
    made = client.create_run(experiment_id(client), run_name=Path(study_dir).name, tags=tags)
    log_params(client, made.info.run_id, settings)
    optuna_study.set_user_attr("mlflow_run_id", made.info.run_id)
    return made.info.run_id


def end_study_run(run_id: str | None, report: dict) -> None:
    """The study's best value and its pictures on its MLflow run."""
    if run_id is None:
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    best = report.get("best") or {}
    now = int(time.time() * 1000)
    metrics = [Metric("trials", float(len(report.get("trials", []))), now, 0)]
    if isinstance(best.get("value"), int | float):
        metrics.append(Metric("best_value", float(best["value"]), now, 0))
    client.log_batch(run_id, metrics=metrics)
    folder = Path(report["study_dir"])
    for path in sorted(folder.glob("*.png")) + [folder / "summary.json"]:
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FINISHED")


# -- tfvision board ------------------------------------------------------------------------


def board_folder(target: str | None) -> Path:
    """What `tfvision board` shows: a folder (a run, a study, a runs folder), a run's name, or
    the runs folder; refused when it holds no TensorBoard event files."""
    from tfvision_cli.runs import resolve_run, runs_root

    if target is None:
        folder = runs_root()
    elif Path(target).is_dir():
        folder = Path(target)
    else:
        folder = resolve_run(target).path
    folder = folder.resolve()
    if not any(folder.rglob("events.out.tfevents.*")):
        raise UsageError(
            f"no TensorBoard logs under {folder}",
            hint="give a run, a tune study folder or a runs folder (training writes logs/)",
        )
    return folder


def start_board(folder: Path, port: int) -> str:
    """TensorBoard on loopback in this process (its server runs in a thread); its URL."""
    from tensorboard import program

    from tfvision_cli.tf_import import tf

    tf()  # quietly, before TensorBoard imports it
    board = program.TensorBoard()
    board.configure(
        argv=[
            None,
            "--logdir",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
        ]
    )
    try:
        return board.launch()
    except program.TensorBoardPortInUseError:
        raise UsageError(
            f"port {port} is in use", hint="choose another with --port (0: any free one)"
        ) from None
