"""Runs you can tell apart (issue 17): names, `runs list|show|rm`, `train --name`, and
`train --resume` on a finished run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import subprocess_env, tfvision_cmd


def _train(cli, *args: str):
    r = cli("train", "digits", "--model", "mlp", "--epochs", "1", *args)
    assert r.exit_code == 0, r.stderr
    return r


def test_a_named_run_is_listed_whole_at_80_columns_and_found_by_name(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "80")
    name = "cnn-on-my-photos-lr0.003-augment-v2"
    _train(cli, "--name", name)
    _train(cli, "--name", "second")
    root = Path(os.environ["TFVISION_RUNS_DIR"])
    assert (root / name / "run.json").is_file()
    r = subprocess.run(
        tfvision_cmd("runs list"),
        env=subprocess_env(COLUMNS="80"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert name in r.stdout and str(root / name) not in r.stdout  # names, not paths
    assert r.stdout.index("second") < r.stdout.index(name)  # newest first
    assert "1/1" in r.stdout and "completed" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    rows = cli("runs", "list", "--json").json()
    assert [row["name"] for row in rows] == ["second", name]
    r = cli("runs", "show", name)
    assert r.exit_code == 0 and "test accuracy" in r.stdout and "Configuration" in r.stdout
    shown = cli("runs", "show", name, "--json").json()
    assert shown["run_dir"] == str(root / name) and shown["metrics"]["epochs"] == 1
    r = cli("evaluate", name, "--no-plots", "--json")  # every command takes the name
    assert r.exit_code == 0 and r.json()["model"] == str(root / name / "model.keras")
    # a folder of the same name where the command runs (a data folder, say) does not hide it
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir()
    assert cli("runs", "show", name, "--json").json()["run_dir"] == str(root / name)
    r = cli("runs", "show", f"./{name}")  # the folder here, asked for as a path
    assert r.exit_code == 2 and "is not a tfvision run directory" in r.stderr


def test_bad_names_and_name_with_run_dir_are_usage_errors(cli, tmp_path):
    for bad in ("../escape", ".hidden", "a/b", "x" * 101):
        r = cli("train", "digits", "--model", "mlp", "--name", bad)
        assert r.exit_code == 2 and "bad run name" in r.stderr, bad
    r = cli("train", "digits", "--name", "n", "--run-dir", tmp_path / "r")
    assert r.exit_code == 2 and "not both" in r.stderr


def test_resume_on_a_finished_run_trains_nothing(cli):
    _train(cli, "--name", "done")
    root = Path(os.environ["TFVISION_RUNS_DIR"])
    before = (root / "done" / "metrics.json").read_bytes()
    model = (root / "done" / "model.keras").stat().st_mtime_ns
    r = cli("train", "--resume", "--name", "done", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["already_complete"] is True
    assert (root / "done" / "metrics.json").read_bytes() == before
    assert (root / "done" / "model.keras").stat().st_mtime_ns == model
    r = cli("train", "--resume", "--name", "done")
    assert r.exit_code == 0 and "is complete" in r.stderr and "nothing to train" in r.stderr
    r = cli("train", "--resume", "--name", "done", "--epochs", "2", "--json")  # asks for more
    assert r.exit_code == 0 and r.json()["metrics"]["epochs"] == 2


def test_runs_rm_deletes_only_tfvision_runs_and_asks_first(cli, tmp_path):
    _train(cli, "--name", "old")
    _train(cli, "--name", "kept")
    root = Path(os.environ["TFVISION_RUNS_DIR"])
    (root / "kept" / "my-notes.txt").write_text("mine")
    user = tmp_path / "user-folder"
    user.mkdir()
    (user / "thesis.tex").write_text("mine")
    r = cli("runs", "rm", "old")  # not a terminal, no --yes: refused, nothing deleted
    assert r.exit_code == 2 and "--yes" in r.stderr and (root / "old").is_dir()
    r = cli("runs", "rm", "old", user, "--yes")  # a folder that is not a run: nothing deleted
    assert r.exit_code == 2 and "not a tfvision run" in r.stderr and (root / "old").is_dir()
    r = cli("runs", "rm", "old", "kept", "--yes")
    assert r.exit_code == 1 and "my-notes.txt" in r.stderr
    assert not (root / "old").exists()
    assert (root / "kept" / "my-notes.txt").read_text() == "mine"
    assert json.loads((root / "kept" / "run.json").read_text())["status"] == "completed"
    assert (user / "thesis.tex").read_text() == "mine"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize(
    "plant",
    [
        "exports/NOTES.txt",
        "backup/NOTES.txt",
        "logs/NOTES.txt",
        "logs/train/NOTES.txt",
        "exports/onnx/NOTES.txt",
        ".thesis.tfvision-tmp-1-0123456789abcdef-MY-DRAFTS/chapter1.tex",
        ".model.keras.tfvision-tmp-1-0123456789abcdef-MY-DRAFTS",
        "confusion_matrix.png",
    ],
)
def test_runs_rm_leaves_every_byte_of_a_users_file(cli, plant):
    """A user's file anywhere in a run (inside backup/, logs/, exports/, an export folder, a
    look-alike of tfvision's temporaries, a picture tfvision did not draw) keeps the whole run,
    byte for byte, and is named."""
    _train(cli, "--name", "mine")
    root = Path(os.environ["TFVISION_RUNS_DIR"])
    run = root / "mine"
    assert cli("export", run, "--format", "onnx").exit_code == 0
    path = run / plant
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"a user's bytes")
    before = _snapshot(run)
    r = cli("runs", "rm", "mine", "--yes")
    assert r.exit_code == 1, r.stderr
    named = "/".join(plant.split("/")[:2]) if plant.count("/") > 1 else plant.split("/")[0]
    assert "did not write" in r.stderr and named in r.stderr, r.stderr
    assert _snapshot(run) == before


def test_runs_rm_deletes_a_run_with_its_exports_and_refuses_a_link(cli, tmp_path):
    _train(cli, "--name", "whole")
    root = Path(os.environ["TFVISION_RUNS_DIR"])
    assert cli("export", root / "whole", "--format", "onnx").exit_code == 0
    assert cli("evaluate", "whole", "--json").exit_code == 0  # its pictures, with their tag
    link = tmp_path / "link"
    link.symlink_to(root / "whole")
    before = _snapshot(root / "whole")
    r = cli("runs", "rm", link, "--yes")
    assert r.exit_code == 1 and "symbolic link" in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(root / "whole") == before
    r = cli("runs", "rm", "whole", "--yes")
    assert r.exit_code == 0, r.stderr
    assert not (root / "whole").exists()


def test_a_mistyped_run_name_gets_a_suggestion(cli):
    _train(cli, "--name", "fashion")
    for args in (("evaluate", "fashon"), ("runs", "show", "fashon"), ("predict", "fashon", "-")):
        r = cli(*args, input="")
        assert r.exit_code == 2 and "Did you mean: fashion?" in r.stderr, (args, r.stderr)


def test_the_epoch_lines_say_what_ce_and_loss_are(cli):
    r = _train(cli, "--name", "legend", "--epochs", "2")
    assert r.stderr.count("(ce: cross-entropy") == 1


def test_runs_list_says_what_each_run_is_and_where_it_came_from(cli, tmp_path):
    _train(cli, "--name", "base")
    root = Path(os.environ["TFVISION_RUNS_DIR"])
    _train(cli, "--name", "tuned", "--init-from", "base")
    r = cli("prune", "base", "--sparsity", "0.5", "--epochs", "1", "--name", "pruned", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {row["name"]: row for row in cli("runs", "list", "--json").json()}
    assert rows["base"]["kind"] == "train" and rows["base"]["parent"] is None
    assert rows["tuned"]["kind"] == "fine-tune"
    assert Path(rows["tuned"]["parent"]).parent.name == "base"  # its model.keras
    assert rows["pruned"]["kind"] == "prune" and rows["pruned"]["parent"] == str(root / "base")
    text = cli("runs", "list").stdout
    assert "prune of base" in text and "fine-tune of base" in text
