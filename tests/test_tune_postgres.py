"""`tfvision tune --storage postgresql://...` on a real PostgreSQL server (tests/postgres.py):
named studies, workers that start together and share the work, join checks, the list of
studies, a killed worker, the driver named when missing, no password on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import subprocess_env, tfvision_cmd


@pytest.fixture(scope="module")
def pg():
    from tests import postgres
    from tfvision_cli.training.cluster import free_loopback_ports

    if postgres.binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is needed: .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with postgres.server(free_loopback_ports(1)[0]) as server:
        yield server


def _space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"learning_rate": {"low": 0.0005, "high": 0.05, "log": True}}))
    return path


def _tune(pg, space: Path, study_dir: Path, *extra: str) -> list[str]:
    return [
        *tfvision_cmd("tune"),
        "digits",
        "--space",
        str(space),
        "--sampler",
        "random",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--study-dir",
        str(study_dir),
        *extra,
    ]


def _start(cmd: list[str], pg) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(PGPASSWORD=pg.password),
    )


def _trials(url: str, name: str, pg):
    import optuna

    os.environ["PGPASSWORD"] = pg.password
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    finally:
        del os.environ["PGPASSWORD"]


def test_two_workers_started_together_on_a_fresh_database_share_one_study(pg, tmp_path):
    url = pg.create_database("fresh_two_workers")
    space = _space(tmp_path)
    args = ["--trials", "6", "--storage", url, "--study-name", "exp1", "--json"]
    workers = [_start(_tune(pg, space, tmp_path / f"machine{i}", *args), pg) for i in (0, 1)]
    outs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outs, strict=True):
        assert w.returncode == 0, err  # neither dies creating Optuna's tables
        assert pg.password not in out + err
    trials = _trials(url, "exp1", pg)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6 and len(trials) == 6  # exactly the total, running ones counted
    assert len({t.params["learning_rate"] for t in complete}) == 6  # distinct points
    for t in complete:  # each machine's runs in its own study folder, and who ran it
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.parent.parent.name in ("machine0", "machine1")
        assert (run_dir / "metrics.json").is_file() and t.user_attrs["host"]
    reports = [json.loads(out) for out, _ in outs]
    assert {len(r["trials"]) for r in reports} == {6}  # each report reads every trial
    assert all(row["host"] for r in reports for row in r["trials"])
    for folder in (tmp_path / "machine0", tmp_path / "machine1"):
        saved = yaml.safe_load((folder / "tune.yaml").read_text())
        assert saved["name"] == "exp1" and saved["storage"] == url
        for path in folder.rglob("*"):  # the password is on no file a worker wrote
            if path.is_file():
                assert pg.password.encode() not in path.read_bytes(), path


def test_named_studies_on_one_server_stay_apart_and_are_listed(pg, tmp_path, cli, monkeypatch):
    url = pg.create_database("named_studies")
    monkeypatch.setenv("PGPASSWORD", pg.password)
    space = _space(tmp_path)
    common = ["digits", "--space", space, "--sampler", "random", "--model", "mlp", "--epochs", "1"]
    r = cli(
        "tune",
        *common,
        "--trials",
        "2",
        "--storage",
        url,
        "--study-name",
        "first",
        "--study-dir",
        tmp_path / "a",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    r = cli(
        "tune",
        *common,
        "--trials",
        "1",
        "--storage",
        url,
        "--study-name",
        "second",
        "--study-dir",
        tmp_path / "b",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert len(report["trials"]) == 1  # it saw none of the first study's trials
    assert report["best"]["number"] == report["trials"][0]["number"] == 0
    # joining `first` with another space is refused, with both listed
    other = tmp_path / "other.yaml"
    other.write_text("learning_rate: [0.01, 0.02]\n")
    r = cli(
        "tune",
        "digits",
        "--space",
        other,
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--storage",
        url,
        "--study-name",
        "first",
        "--study-dir",
        tmp_path / "c",
    )
    assert r.exit_code == 2, r.stderr
    assert "a study named 'first' already exists" in r.stderr and "space: the study's" in r.stderr
    assert "[0.01, 0.02]" in r.stderr and "'log': True" in r.stderr
    # a shared storage needs a name every machine gives
    r = cli("tune", *common, "--storage", url)
    assert r.exit_code == 2 and "--study-name NAME" in r.stderr
    r = cli("tune", "--list", "--storage", pg.url_with_password("named_studies"), "--json")
    assert r.exit_code == 0, r.stderr
    listed = {row["name"]: row for row in r.json()}
    assert set(listed) == {"first", "second"}  # `other` was refused before it made a study
    assert listed["first"]["trials"] == {"complete": 2}
    assert listed["second"]["dataset"] == "digits" and listed["second"]["model"] == "mlp"
    assert pg.password not in r.stdout + r.stderr
    table = cli("tune", "--list", "--storage", url)
    assert "first" in table.stdout and "second" in table.stdout


def test_a_killed_workers_trial_is_not_counted_as_done(pg, tmp_path):
    url = pg.create_database("killed_worker")
    args = ["--trials", "3", "--storage", url, "--study-name", "killed", "--epochs", "5"]
    cmd = _tune(pg, _space(tmp_path), tmp_path / "s", *args)
    worker = _start(cmd, pg)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # killed in the middle of its first trial
        try:
            trials = _trials(url, "killed", pg)
        except KeyError:  # the study is not created yet
            trials = []
        if any(t.state.name == "RUNNING" and t.params for t in trials):  # training
            break
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=60)
    assert [t.state.name for t in _trials(url, "killed", pg)] == ["RUNNING"]
    again = _start(cmd, pg)  # the same command again, on the same machine
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    trials = _trials(url, "killed", pg)
    states = [t.state.name for t in trials]
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 3, states
    assert trials[0].state.name == "FAIL"
    assert trials[1].params == trials[0].params  # its point is re-run, not lost


def test_a_missing_driver_names_the_extra(cli, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    space = _space(tmp_path)
    r = cli(
        "tune",
        "digits",
        "--space",
        space,
        "--storage",
        "postgresql://me@127.0.0.1:1/x",
        "--study-name",
        "x",
        "--study-dir",
        tmp_path / "s",
    )
    assert r.exit_code == 2 and "needs a database driver that is not installed" in r.stderr
    assert "pip install -e '.[postgres]'" in r.stderr and not (tmp_path / "s").exists()
