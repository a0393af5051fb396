"""Where results go: TensorBoard's HParams (read back with TensorBoard's own event reader),
`tfvision board`, and MLflow (read back with MLflow's client from a real local store)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import subprocess_env, tfvision_cmd

TINY = ["--model", "mlp", "--epochs", "2", "--steps-per-epoch", "15", "--batch-size", "64"]


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A real MLflow tracking store (SQLite, MLflow's own local kind) in a temporary folder;
    run there, since MLflow keeps a SQLite store's artifacts in ./mlruns of the working
    directory (they landed in the checkout)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tfvision-tests")
    return uri


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def _hparams(logs: Path) -> dict:
    """The session's hyperparameters as TensorBoard's HParams plugin reads them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = _events(logs)
    content = acc.PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    out = {}
    for name, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out


def _final(logs: Path) -> dict:
    import tensorflow as tf

    acc = _events(logs)
    return {
        tag: float(tf.make_ndarray(acc.Tensors(tag)[-1].tensor_proto))
        for tag in acc.Tags()["tensors"]
        if tag.startswith("final/")
    }


def test_a_tracked_run_lands_in_mlflow_and_tensorboard_hparams(mnist, tmp_path, store, cli):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "tracked"
    r = cli(
        "train",
        "mnist",
        *TINY,
        "--learning-rate",
        "0.003",
        "--run-dir",
        run_dir,
        "--track",
        "mlflow",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    assert f"tracking: MLflow run {run_id}" in r.stderr

    client = MlflowClient(store)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "tracked"
    assert got.data.params["model"] == "mlp"
    assert float(got.data.params["learning_rate"]) == 0.003
    assert got.data.tags["tfvision.kind"] == "train"
    assert got.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    history = client.get_metric_history(run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.keras", "metrics.json", "history.csv", "training_curves.png"} <= artifacts
    experiment = client.get_experiment(got.info.experiment_id)
    assert experiment.name == "tfvision-tests"

    hparams = _hparams(run_dir / "logs")
    assert hparams["model"] == "mlp" and hparams["learning_rate"] == pytest.approx(0.003)
    assert _final(run_dir / "logs")["final/test_accuracy"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )

    shown = cli("runs", "show", run_dir)
    assert run_id in shown.stdout


def test_resuming_a_tracked_run_logs_into_the_same_mlflow_run(mnist, tmp_path, store, cli):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "resumed"
    args = ["train", "mnist", "--model", "mlp", "--steps-per-epoch", "10", "--run-dir", run_dir]
    assert cli(*args, "--epochs", "1", "--track", "mlflow").exit_code == 0
    first = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    r = cli(*args, "--epochs", "2", "--resume", "--track", "mlflow")
    assert r.exit_code == 0, r.stderr
    assert json.loads((run_dir / "run.json").read_text())["mlflow_run_id"] == first
    client = MlflowClient(store)
    assert [m.step for m in client.get_metric_history(first, "accuracy")] == [0, 1]
    assert len(client.search_runs([client.get_run(first).info.experiment_id])) == 1


def test_a_tracked_study_is_a_parent_run_with_one_child_per_trial(mnist, tmp_path, store, cli):
    from mlflow.tracking import MlflowClient

    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: [0.001, 0.003]\n")
    study = tmp_path / "study"
    r = cli(
        "tune",
        "mnist",
        "--space",
        space,
        "--trials",
        "2",
        "--sampler",
        "grid",
        "--study-dir",
        study,
        *TINY,
        "--epochs",
        "1",
        "--track",
        "mlflow",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("tfvision-tests").experiment_id])
    parents = [x for x in runs if x.data.tags.get("tfvision.kind") == "tune study"]
    assert len(parents) == 1
    parent = parents[0]
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2
    assert {float(c.data.params["learning_rate"]) for c in children} == {0.001, 0.003}
    assert all(c.data.tags["tfvision.kind"] == "tune trial" for c in children)
    assert parent.info.status == "FINISHED" and parent.data.params["sampler"] == "grid"
    best = r.json()["best"]["value"]
    assert client.get_run(parent.info.run_id).data.metrics["best_value"] == pytest.approx(best)
    # every trial's hyperparameters are in its own logs/, for the HParams dashboard
    rates = sorted(_hparams(d / "logs")["learning_rate"] for d in (study / "trials").iterdir())
    assert rates == pytest.approx([0.001, 0.003])


def test_tracking_choices_are_checked_before_anything_runs(mnist, cli, monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("TFVISION_TRACK", "wandb")
    r = cli("train", "mnist", "--run-dir", tmp_path / "never")
    assert r.exit_code == 2 and "TFVISION_TRACK='wandb' is not a tracker" in r.stderr
    monkeypatch.setenv("TFVISION_TRACK", "mlflow")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    r = cli("train", "mnist", "--run-dir", tmp_path / "never")
    assert r.exit_code == 2 and "pip install -e '.[mlflow]'" in r.stderr
    assert not (tmp_path / "never").exists()


def test_board_serves_tensorboard_on_loopback_with_the_hparams_of_every_run(mnist, tmp_path, cli):
    runs = tmp_path / "runs"
    for rate in ("0.001", "0.002"):
        r = cli(
            "train",
            "mnist",
            *TINY,
            "--epochs",
            "1",
            "--learning-rate",
            rate,
            "--run-dir",
            runs / f"lr{rate}",
        )
        assert r.exit_code == 0, r.stderr
    board = subprocess.Popen(
        [*tfvision_cmd("board"), str(runs), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        url = board.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), board.stderr.read()
        deadline = time.monotonic() + 60
        while True:
            seen = requests.get(url + "data/runs", timeout=10).json()
            if {"lr0.001/logs", "lr0.002/logs"} <= set(seen) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert {"lr0.001/logs", "lr0.002/logs"} <= set(seen)
        experiment = requests.post(
            url + "data/plugin/hparams/experiment",
            json={"experimentName": ""},
            headers={"X-XSRF-Protected": "1"},
            timeout=30,
        ).json()
        rates = next(h for h in experiment["hparamInfos"] if h["name"] == "learning_rate")
        assert rates["domainInterval"] == {"minValue": 0.001, "maxValue": 0.002}
        board.send_signal(signal.SIGINT)
        assert board.wait(timeout=30) == 0
    finally:
        board.kill()
        board.wait()


def test_board_refuses_a_folder_without_logs(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    r = cli("board", tmp_path / "empty")
    assert r.exit_code == 2 and "no TensorBoard logs under" in r.stderr
