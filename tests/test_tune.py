"""`tfvision tune`: Optuna studies of ordinary runs, resumable and shared between processes."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import subprocess_env, tfvision_cmd


def _space(tmp_path: Path, space: dict) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.mark.parametrize(
    "space, sampler, message",
    [
        ({"learnig_rate": [0.01]}, "tpe", "Did you mean: learning_rate"),
        ({"learning_rate": []}, "tpe", "empty list"),
        ({"learning_rate": {"low": 0.1, "high": 0.01}}, "tpe", "above high"),
        ({"learning_rate": {"low": 0.001, "high": 0.01}}, "grid", "needs lists of choices"),
        ({"optimizer": ["adam", "adm"]}, "tpe", "unknown optimizer 'adm'"),
        ({"model_options.width": [8]}, "tpe", "has no option 'width'"),
    ],
)
def test_bad_spaces_are_usage_errors_before_anything_runs(cli, tmp_path, space, sampler, message):
    study = tmp_path / "study"
    r = cli(
        "tune",
        "digits",
        "--space",
        _space(tmp_path, space),
        "--sampler",
        sampler,
        "--model",
        "mlp",
        "--study-dir",
        study,
    )
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and r.stderr.count("error:") == 1
    assert not study.exists()


def test_grid_runs_every_combination_once_and_best_yaml_reproduces(cli, tmp_path):
    space = _space(tmp_path, {"optimizer": ["adam", "sgd"], "learning_rate": [0.003, 0.03]})
    study = tmp_path / "study"
    r = cli(
        "tune",
        "digits",
        "--space",
        space,
        "--sampler",
        "grid",
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--study-dir",
        study,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    report = r.json()
    combos = sorted(
        (t["params"]["optimizer"], t["params"]["learning_rate"]) for t in report["trials"]
    )
    assert combos == [("adam", 0.003), ("adam", 0.03), ("sgd", 0.003), ("sgd", 0.03)]
    assert all(t["state"] == "complete" for t in report["trials"])
    # piped, the study's progress is one line per event
    lines = r.stderr.splitlines()
    for n in range(4):
        assert any(line.startswith(f"trial {n} started: ") for line in lines), r.stderr
        assert any(line.startswith(f"trial {n} epoch 2/2  val_accuracy") for line in lines)
        assert any(line.startswith(f"trial {n} complete: val_accuracy ") for line in lines)
    assert any("; 4/4 done, " in line for line in lines)
    assert "\x1b[" not in r.stderr
    assert report["few_trials"].startswith("only 4 complete trials")
    assert "parameter importances from fewer than 10 are mostly noise" in r.stderr
    best = report["best"]
    assert best["value"] == max(t["value"] for t in report["trials"])
    rows = list(csv.DictReader((study / "trials.csv").open()))
    assert len(rows) == 4 and float(rows[0]["value"]) == best["value"]  # ranked
    for t in report["trials"]:  # every trial is an ordinary run
        assert json.loads((Path(t["run_dir"]) / "run.json").read_text())["status"] == "completed"
    # best.yaml is a complete config that retrains to the best trial's validation accuracy
    r = cli("train", "--config", study / "best.yaml", "--run-dir", tmp_path / "again", "--json")
    assert r.exit_code == 0, r.stderr
    assert abs(r.json()["metrics"]["val_accuracy"] - best["value"]) <= 0.005
    # the same command again is refused; --resume with no trials left runs none
    r = cli("tune", "--resume", "--study-dir", study, "--json")
    assert r.exit_code == 0 and len(r.json()["trials"]) == 4


def test_trials_leave_no_graphs_behind(tmp_path):
    """Memory across trials: each training's graphs are gone after its trial (TensorFlow's
    gradient registry used to keep them, ~15 MB a trial; benchmarks/tune_memory.py measures RSS)."""
    import gc

    from tfvision_cli.training.tune import Study, parse_space, run_study

    space = parse_space({"learning_rate": [0.01, 0.02, 0.03, 0.04]})
    study = Study("digits", space, {"model": "mlp", "epochs": 1}, "grid", trials=4)
    (tmp_path / "study").mkdir()
    graphs = []

    def on_event(kind: str, **data) -> None:
        from tensorflow.python.framework.func_graph import FuncGraph

        if kind != "trial_end":
            return
        gc.collect()
        graphs.append(sum(isinstance(o, FuncGraph) for o in gc.get_objects()))

    report = run_study(tmp_path / "study", study, on_event)
    assert [t["state"] for t in report["trials"]] == ["complete"] * 4
    assert graphs[-1] <= graphs[0], graphs


def test_a_study_in_a_database_url(cli, tmp_path):
    """--storage takes any URL Optuna accepts (PostgreSQL for many machines; SQLite here)."""
    space = _space(tmp_path, {"learning_rate": [0.01, 0.03]})
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    r = cli(
        "tune",
        "digits",
        "--space",
        space,
        "--sampler",
        "grid",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--study-dir",
        tmp_path / "study",
        "--storage",
        url,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    assert len(r.json()["trials"]) == 2 and (tmp_path / "studies.db").stat().st_size > 0
    assert not (tmp_path / "study" / "study.journal").exists()
    r = cli("tune", "--resume", "--study-dir", tmp_path / "study", "--json")  # read back from it
    assert r.exit_code == 0 and len(r.json()["trials"]) == 2


def _tune_cmd(study: Path, space: Path, trials: int) -> list[str]:
    return tfvision_cmd(
        f"tune digits --model mlp --epochs 2 --sampler random --trials {trials} --json --study-dir",
        study,
        "--space",
        space,
    )


def _complete(study: Path) -> list[dict]:
    report = json.loads((study / "summary.json").read_text())
    return [t for t in report["trials"] if t["state"] == "complete"]


@pytest.mark.slow
def test_a_killed_study_resumes_to_its_total_without_counting_twice(tmp_path):
    space = _space(tmp_path, {"learning_rate": {"low": 0.001, "high": 0.03, "log": True}})
    study = tmp_path / "study"
    proc = subprocess.Popen(
        _tune_cmd(study, space, 5),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (study / "trials" / "0002").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # during the third trial
    proc.wait()
    r = subprocess.run(
        tfvision_cmd("tune --resume --json --study-dir", study),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    trials = json.loads(r.stdout)["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert len(complete) == 5
    failed = [t for t in trials if t["state"] == "fail"]
    assert [t["number"] for t in failed] == [2]  # the killed one, retried once
    assert len({t["number"] for t in trials}) == len(trials)
    retried = [t for t in complete if t["params"] == failed[0]["params"]]
    assert retried and retried[0]["number"] > 2


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    space = _space(tmp_path, {"learning_rate": {"low": 0.001, "high": 0.03, "log": True}})
    study = tmp_path / "study"
    procs = [
        subprocess.Popen(
            _tune_cmd(study, space, 6),
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err
    complete = _complete(study)
    assert len(complete) == 6  # the study's total, not 2 x 6, and not one more
    assert len({t["run_dir"] for t in complete}) == 6
    assert len({t["params"]["learning_rate"] for t in complete}) == 6  # each its own point


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("pruner", "bogus", "pruner 'bogus' is not one of"),
        ("trials", "abc", "trials must be a whole number"),
        ("metric", "test_accuracy", "metric 'test_accuracy' is not one of"),
        ("sampler", "tpe2", "Did you mean: tpe"),
        ("fixed", {"learnig_rate": 0.1}, "Did you mean: learning_rate"),
    ],
)
def test_resume_checks_an_edited_study_file(cli, tmp_path, key, value, message):
    """tune.yaml is a file anyone can edit: --resume checks every value (exit 2, one line), and
    never ranks trials on the test split."""
    study = tmp_path / "study"
    study.mkdir()
    raw = {
        "dataset": "digits",
        "space": {"learning_rate": [0.01]},
        "fixed": {"model": "mlp"},
        "sampler": "tpe",
        "pruner": "none",
        "metric": "val_accuracy",
        "trials": 1,
        "seed": 0,
        "storage": None,
    }
    raw[key] = value
    (study / "tune.yaml").write_text(yaml.safe_dump(raw))
    r = cli("tune", "--resume", "--study-dir", study)
    assert r.exit_code == 2 and message in r.stderr, r.stderr
    assert r.stderr.count("error:") == 1 and not (study / "trials").exists()


def test_a_storage_that_fails_leaves_nothing_and_no_password_is_written(cli, tmp_path):
    space = _space(tmp_path, {"learning_rate": [0.01]})
    notes = tmp_path / "notes.db"
    notes.write_text("a user's text file, not a database\n")
    study = tmp_path / "study"
    args = [
        "tune",
        "digits",
        "--space",
        space,
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--trials",
        "1",
        "--study-dir",
        study,
    ]
    r = cli(*args, "--storage", f"sqlite:///{notes}")
    assert r.exit_code == 2 and "cannot open --storage" in r.stderr, r.stderr
    assert not study.exists() and notes.read_text().startswith("a user's text file")
    r = cli(*args, "--storage", f"sqlite:///{tmp_path / 'good.db'}", "--json")
    assert r.exit_code == 0, r.stderr  # the corrected command is not blocked
    from tfvision_cli.training.tune import Study, create_study_file, load_study, parse_space

    url = "postgresql://me:s3cret@db.example:5432/studies"
    secret = Study("digits", parse_space({"learning_rate": [0.01]}), storage=url)
    assert create_study_file(tmp_path, secret)
    assert "s3cret" not in (tmp_path / "tune.yaml").read_text()
    assert load_study(tmp_path).storage == "postgresql://me@db.example:5432/studies"


def test_on_a_terminal_tune_shows_live_bars_for_the_study_and_the_trial(tmp_path):
    """In a pseudo-terminal: the study's bar (done/total, best so far) and the trial's epoch
    bar, with a line per trial above them."""
    import os
    import pty
    import select

    space = _space(tmp_path, {"learning_rate": [0.003, 0.03]})
    args = ["digits", "--space", space, "--sampler", "grid", "--model", "mlp", "--epochs", "1"]
    master, slave = pty.openpty()
    env = subprocess_env(COLUMNS="150", TERM="xterm")
    env.pop("NO_COLOR", None)
    p = subprocess.Popen(
        [*tfvision_cmd("tune"), *map(str, args), "--study-dir", str(tmp_path / "s")],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    out = b""
    while p.poll() is None or select.select([master], [], [], 0.2)[0]:
        if select.select([master], [], [], 0.2)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
    os.close(master)
    assert p.wait(timeout=30) == 0, out[-2000:]
    text = out.decode(errors="replace")
    assert "\x1b[" in text  # a live display
    assert "trial 0 epoch 1/1" in text and "trial 1 epoch 1/1" in text  # the epoch bar
    assert "trials" in text and "2/2" in text and "best 0." in text  # the study's bar
    assert "trial 1 complete: val_accuracy" in text
