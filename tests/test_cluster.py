"""Multi-worker training on 127.0.0.1: `tfvision cluster local`, TF_CONFIG, fault tolerance."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import run, subprocess_env, tfvision_cmd
from tfvision_cli.training.callbacks import Backup


def _worker_results(r: subprocess.CompletedProcess) -> dict[int, dict]:
    """The final JSON of every worker: the chief's is the launcher's stdout, the others' come
    on stderr as "[worker i] {...}"."""
    results = {0: json.loads(r.stdout.strip().splitlines()[-1])["metrics"]}
    for m in re.finditer(r"^\[worker (\d+)\] (\{.*\})$", r.stderr, re.M):
        results[int(m.group(1))] = json.loads(m.group(2))["metrics"]
    return results


def _worker_pid(launcher: int, index: int) -> int:
    """The pid of the launcher's child whose TF_CONFIG names task `index`."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in map(int, children):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        config = next(e for e in environ if e.startswith(b"TF_CONFIG="))
        if json.loads(config[len(b"TF_CONFIG=") :])["task"]["index"] == index:
            return pid
    raise AssertionError(f"no worker {index} among {children}")


def test_the_launcher_uses_loopback_only_and_generates_tf_config():
    from tfvision_cli.training.cluster import free_loopback_ports, tf_config

    ports = free_loopback_ports(3)
    assert len(set(ports)) == 3
    configs = [json.loads(tf_config(ports, i)) for i in range(3)]
    for i, c in enumerate(configs):
        assert c["task"] == {"type": "worker", "index": i}
        assert c["cluster"]["worker"] == [f"127.0.0.1:{p}" for p in ports]


def test_cluster_local_refuses_other_commands_and_train_needs_a_shared_run_dir(cli, monkeypatch):
    r = cli("cluster", "local", "--workers", "2", "--", "export", "latest", "--format", "keras")
    assert r.exit_code == 2 and "runs `train`" in r.stderr
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    r = cli("train", "digits", "--model", "mlp", "--epochs", "1")
    assert r.exit_code == 2 and "needs --run-dir" in r.stderr


def test_two_workers_train_one_model_like_one_worker_with_the_same_global_batch(
    cli, tmp_path, mnist
):
    recipe = "mnist --model fastnet --model-option width=8 --epochs 2 --steps-per-epoch 100"
    start = time.perf_counter()
    # --learning-rate is per replica's batch and scaled by the replica count: 2 x 0.0015 here
    r = run(
        tfvision_cmd(
            f"cluster local --workers 2 -- train {recipe} --batch-size 32 --learning-rate 0.0015 "
            "--json --run-dir",
            tmp_path / "cluster",
        ),
        timeout=600,
    )
    seconds = time.perf_counter() - start
    assert r.returncode == 0, r.stderr[-3000:]
    workers = _worker_results(r)
    assert set(workers) == {0, 1}
    chief = workers[0]
    # one model: every weight (BatchNorm's moving statistics too) equal on both workers
    assert chief["weights_sha256"] == workers[1]["weights_sha256"]
    assert chief["test_accuracy"] == workers[1]["test_accuracy"]
    # the cluster's numbers: 2 replicas, global batch 64, 100 steps of it per epoch
    assert chief["strategy"] == "multi-worker" and chief["replicas"] == 2
    assert chief["global_batch_size"] == 64
    assert "[worker 0] devices: multi-worker: worker 0 of 2" in r.stderr
    assert "[worker 1] devices: multi-worker: worker 1 of 2" in r.stderr
    # only the chief wrote, and the other worker's scratch folder is gone
    run_dir = tmp_path / "cluster"
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert json.loads((run_dir / "metrics.json").read_text()) == chief
    assert not list(tmp_path.glob(".tfvision-worker*"))
    # in line with one worker at the same global batch and step count
    one = cli("train", *recipe.split(), "--batch-size", "64", "--learning-rate", "0.003", "--json")
    assert one.exit_code == 0, one.stderr
    single = one.json()["metrics"]
    assert single["global_batch_size"] == 64
    assert abs(single["test_accuracy"] - chief["test_accuracy"]) < 0.02, (single, chief)
    assert chief["test_accuracy"] > 0.9
    print(
        f"2 workers: {seconds:.1f} s, test accuracy {chief['test_accuracy']:.4f}; "
        f"1 worker: {single['test_accuracy']:.4f}"
    )


def test_onednn_is_on_by_default_but_not_in_a_cluster_nor_against_the_users_choice():
    """oneDNN's Conv2D gives an empty batch its input's shape (TensorFlow 2.21), and a worker
    of a cluster evaluates empty batches: the test above failed with it on."""
    probe = "import os, tfvision_cli; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    cluster = json.dumps({"cluster": {"worker": ["a:1", "b:2"]}})

    def seen(**env) -> str:
        mine = ("TF_CONFIG", "TF_ENABLE_ONEDNN_OPTS", "TFVISION_ONEDNN")
        base = {k: v for k, v in os.environ.items() if k not in mine}
        out = subprocess.run(
            [sys.executable, "-c", probe], env={**base, **env}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert seen() == "1"
    assert seen(TF_ENABLE_ONEDNN_OPTS="0") == "0"
    assert seen(TF_ENABLE_ONEDNN_OPTS="1", TF_CONFIG=cluster) == "1"  # the user's choice
    # off, explicitly: TensorFlow turns oneDNN on by itself on AVX-512 class CPUs, where the
    # test above failed with the variable merely unset
    assert seen(TF_CONFIG=cluster) == "0"
    # a worker started by tfvision, which set it for itself
    assert seen(TF_ENABLE_ONEDNN_OPTS="1", TFVISION_ONEDNN="default", TF_CONFIG=cluster) == "0"


def test_a_killed_worker_stops_the_cluster_and_the_same_command_resumes(tmp_path, mnist):
    from tfvision_cli.models.io import load_model

    run_dir = tmp_path / "ft"
    args = tfvision_cmd(
        "cluster local --workers 2 -- train mnist --model mlp --epochs 4 --steps-per-epoch 100 "
        "--batch-size 32 --json --run-dir",
        run_dir,
    )
    launcher = subprocess.Popen(
        args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    history, backup = run_dir / "history.csv", run_dir / "backup"
    deadline = time.time() + 300
    while time.time() < deadline:  # until the first epoch is finished
        if Backup.epochs_done(backup) >= 1:
            break
        time.sleep(0.2)
    try:
        os.kill(_worker_pid(launcher.pid, 1), signal.SIGKILL)
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.terminate()  # the launcher stops its workers on SIGTERM
            launcher.communicate(timeout=60)
    assert launcher.returncode == 1, err[-3000:]
    done_before = Backup.epochs_done(backup)  # what the backup committed, not the log
    assert 1 <= done_before < 4, "the kill should land mid-training"
    assert "worker 1 was killed by SIGKILL; the other workers were stopped" in err
    assert "resume with: tfvision cluster local --workers 2 -- train mnist" in err
    assert "Traceback" not in err
    load_model(run_dir / "model.keras")  # what the chief wrote is whole

    r = run(args, timeout=600)  # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    chief = _worker_results(r)[0]
    assert chief["epochs"] == 4 and chief["epochs_this_session"] == 4 - done_before
    assert [row["epoch"] for row in csv.DictReader(history.open())] == ["0", "1", "2", "3"]
    assert load_model(run_dir / "model.keras").outputs[0].shape[-1] == 10
    assert chief["test_accuracy"] > 0.9


@pytest.mark.parametrize(
    "value",
    [
        "[1, 2]",
        "1",
        '"worker"',
        '{"cluster": [1, 2]}',
        '{"cluster": {"worker": [1]}}',
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": [0]}',
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 5}}',
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": "0"}}',
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}',
    ],
)
def test_a_hostile_tf_config_is_one_line_and_exit_2(value, tmp_path):
    r = subprocess.run(
        tfvision_cmd("train digits --model mlp --epochs 1 --run-dir", tmp_path / "run"),
        env=subprocess_env(TF_CONFIG=value),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "TF_CONFIG" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()
