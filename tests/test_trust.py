"""Nothing a user made is deleted or overwritten; hostile files and names cannot run code, hang
or crash (issue 12). Each test reproduces one way tfvision used to lose data or misbehave."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_image
from tests.helpers import run, subprocess_env, tfvision_cmd


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _user_folder(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "sub" / "thesis.tex").write_text("\\section{mine}")
    return path


@pytest.fixture
def digits_run(cli, tmp_path) -> Path:
    run_dir = tmp_path / "runs" / "digits-run"
    r = cli("train", "digits", "--model", "mlp", "--epochs", "1", "--run-dir", run_dir)
    assert r.exit_code == 0, r.stderr
    return run_dir


def _shapes(root: Path, names: list[str], per_class: int = 8) -> Path:
    """A small learnable folder dataset: class i is a bright square at position i."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        for i in range(per_class):
            img = rng.integers(0, 40, (16, 16), dtype=np.uint8)
            img[2 + 3 * c : 6 + 3 * c, 2:14] = 230
            write_image(root / name / f"{i}.png", img)
    return root


# 1. export --out: a user's folder, the runs folder, the run itself


def test_export_never_replaces_a_folder_it_did_not_write(cli, tmp_path, digits_run):
    user = _user_folder(tmp_path / "d")
    before = _snapshot(user)
    runs_before = _snapshot(digits_run.parent)
    for out in (user, digits_run.parent, digits_run, digits_run / "backup"):
        r = cli("export", digits_run, "--format", "keras", "--out", out, "--no-verify", "--force")
        assert r.exit_code == 2, (out, r.stderr)
        assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    assert _snapshot(user) == before
    assert _snapshot(digits_run.parent) == runs_before


def test_an_earlier_export_is_replaced_only_with_force_and_only_if_it_holds_only_ours(
    cli, tmp_path, digits_run
):
    out = tmp_path / "export"
    args = ("export", digits_run, "--format", "keras", "--out", out, "--no-verify")
    assert cli(*args).exit_code == 0
    first = _snapshot(out)
    r = cli(*args)
    assert r.exit_code == 2 and "--force" in r.stderr
    assert _snapshot(out) == first
    assert cli(*args, "--force").exit_code == 0
    assert (out / "model.keras").is_file() and (out / "metadata.json").is_file()
    (out / "my-notes.txt").write_text("added by the user")
    r = cli(*args, "--force")
    assert r.exit_code == 2 and "my-notes.txt" in r.stderr
    assert (out / "my-notes.txt").read_text() == "added by the user"


# 2. look-alike temporary names beside --out


LOOK_ALIKES = (
    ".zshrc.old-20240101",
    ".notes.tmp-4242.txt",
    ".out.tmp-99999999999999999999999",
    ".out.tfvision-tmp-99999-0123456789abcdef",  # our pattern, but no marker inside
)


def _plant_look_alikes(parent: Path) -> dict[str, bytes]:
    for name in LOOK_ALIKES:
        (parent / name).write_text("user data")
    folder = parent / ".config.tmp-99999"
    folder.mkdir()
    (folder / "settings").write_text("user data")
    return _snapshot(parent)


def _stale_temp(parent: Path, target: str) -> Path:
    """A temporary folder exactly as a killed tfvision leaves it (its pid is gone)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    token = "fedcba9876543210"
    stale = parent / f".{target}.tfvision-tmp-{proc.stdout.strip()}-{token}"
    stale.mkdir()
    (stale / ".tfvision-temp").write_text(token)
    (stale / "half-written").write_text("x")
    return stale


@pytest.mark.parametrize("command", ["export", "preprocess"])
def test_look_alike_temporary_names_are_never_removed(
    cli, tmp_path, digits_run, image_folder, command
):
    parent = tmp_path / "home"
    parent.mkdir()
    before = _plant_look_alikes(parent)
    stale = _stale_temp(parent, "out")
    if command == "export":
        r = cli("export", digits_run, "--format", "keras", "--out", parent / "out", "--no-verify")
    else:
        r = cli("preprocess", image_folder, "--out", parent / "out")
    assert r.exit_code == 0, r.stderr
    after = _snapshot(parent)
    assert {k: after.get(k) for k in before} == before  # every look-alike untouched
    assert not stale.exists()  # while tfvision's own stale temporary is cleaned up


# 3. preprocess: the source inside --out


def test_preprocess_refuses_an_out_that_holds_its_source(cli, tmp_path, image_folder):
    project = tmp_path / "project"
    project.mkdir()
    image_folder.rename(project / "photos")
    before = _snapshot(project)
    for out in (project, project / "photos", project / "photos" / "circle"):
        r = cli("preprocess", project / "photos", "--out", out, "--overwrite")
        assert r.exit_code == 2, (out, r.stderr)
    assert _snapshot(project) == before


def test_preprocess_replaces_only_a_prepared_dataset(cli, tmp_path, image_folder):
    user = _user_folder(tmp_path / "prepared")
    before = _snapshot(user)
    r = cli("preprocess", image_folder, "--out", user, "--overwrite")
    assert r.exit_code == 2 and "not written by tfvision" in r.stderr
    assert _snapshot(user) == before
    out = tmp_path / "ours"
    assert cli("preprocess", image_folder, "--out", out).exit_code == 0
    assert cli("preprocess", image_folder, "--out", out).exit_code == 2
    assert cli("preprocess", image_folder, "--out", out, "--overwrite").exit_code == 0


# 4. and 5. run directories: a user's folder, a run in use


def test_train_never_writes_into_a_folder_that_is_not_a_run(cli, tmp_path):
    user = tmp_path / "p"
    user.mkdir()
    for name, text in (
        ("config.yaml", "epochs: 3\n"),
        ("metrics.json", "{}"),
        ("history.csv", "a"),
    ):
        (user / name).write_text(text)
    before = _snapshot(user)
    r = cli("train", "digits", "--model", "mlp", "--epochs", "1", "--run-dir", user)
    assert r.exit_code == 2 and "not a tfvision run directory" in r.stderr
    assert _snapshot(user) == before


def test_a_second_process_on_a_run_in_use_fails_naming_the_holder(cli, tmp_path, digits_run):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tfvision_cli.runs import RunDir\n"
            "with RunDir(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(120)",
            str(digits_run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _snapshot(digits_run)
        r = cli("train", "--run-dir", digits_run, "--epochs", "3")
        assert r.exit_code == 1, r.stderr
        assert f"in use by another tfvision process (pid {holder.pid})" in r.stderr
        assert _snapshot(digits_run) == before
    finally:
        holder.kill()
        holder.wait()
    r = cli("train", "--run-dir", digits_run, "--epochs", "2", "--json")
    assert r.exit_code == 0, r.stderr
    rows = (digits_run / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1"]


def test_two_trainings_at_once_on_one_run_dir_one_fails_the_other_is_whole(tmp_path):
    run_dir = tmp_path / "shared-run"
    args = tfvision_cmd("train digits --model mlp --epochs 40 --run-dir", run_dir, "--json")
    procs = [
        subprocess.Popen(
            args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    assert "in use by another tfvision process" in loser or "meanwhile" in loser, loser
    epochs = [r.split(",")[0] for r in (run_dir / "history.csv").read_text().splitlines()]
    assert epochs == ["epoch", *map(str, range(40))]


# 6. SavedModels whose graph reads and writes files


@pytest.fixture
def evil_savedmodel(tmp_path) -> tuple[Path, Path]:
    import tensorflow as tf

    marker = tmp_path / "written-by-the-model"

    class Evil(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8)])
        def serve(self, x):
            tf.io.write_file(str(marker), tf.io.read_file("/etc/hostname"))
            return {"output_0": tf.one_hot(tf.zeros([tf.shape(x)[0]], tf.int32), 10)}

    evil = Evil()
    path = tmp_path / "evil_savedmodel"
    tf.saved_model.save(evil, str(path), signatures={"serving_default": evil.serve})
    return path, marker


def test_a_savedmodel_that_touches_files_is_refused_before_it_runs(cli, tmp_path, evil_savedmodel):
    path, marker = evil_savedmodel
    image = write_image(tmp_path / "seven.png", np.zeros((28, 28), np.uint8))
    for args in (("predict", path, image, "--json"), ("evaluate", path, "--dataset", "mnist")):
        r = cli(*args)
        assert r.exit_code == 1, r.stderr
        assert "refused" in r.stderr and "ReadFile" in r.stderr and "WriteFile" in r.stderr
        assert "--trust-model" in r.stderr
        assert not marker.exists()
    # the check is what stopped it: trusted, the same model does write its file
    r = cli("predict", path, image, "--json", "--trust-model")
    assert r.exit_code == 0, r.stderr
    assert "not checked" in r.stderr and marker.exists()


def _graph_in_a_string(path: Path, marker: Path) -> None:
    """serving_default runs a GraphDef kept in a string (DatasetFromGraph): its dataset
    function writes a file. No op that touches files appears in the model's own graph."""
    import tensorflow as tf

    def write(i):
        with tf.control_dependencies([tf.io.write_file(str(marker), "written")]):
            return tf.identity(i)

    inner = tf.data.Dataset.range(1).map(write)
    graph_def = tf.raw_ops.DatasetToGraphV2(input_dataset=inner._variant_tensor).numpy()

    class Hidden(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8)])
        def serve(self, x):
            empty = tf.strings.substr(tf.as_string(tf.shape(x)[0]), 0, 0)  # not foldable
            variant = tf.raw_ops.DatasetFromGraph(graph_def=tf.strings.join([graph_def, empty]))
            ds = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.int64))
            total = ds.reduce(tf.constant(0, tf.int64), lambda a, b: a + b)
            probs = tf.one_hot(tf.zeros([tf.shape(x)[0]], tf.int32), 10)
            return {"output_0": probs + 0.0 * tf.cast(total, tf.float32)}

    module = Hidden()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def _tf1_main_op(path: Path, marker: Path) -> None:
    """A TF1 SavedModel whose main op (in a collection, not a signature) runs SaveV2: TF1
    loaders, tf.saved_model.load among them, run it when they load."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.uint8, [None, 28, 28, 1], name="image")
        probs = tf.one_hot(tf.zeros([tf.shape(x)[0]], tf.int32), 10, name="probs")
        save = tf.raw_ops.SaveV2(
            prefix=str(marker), tensor_names=["x"], shape_and_slices=[""], tensors=[1.0]
        )
        with tf.compat.v1.Session(graph=graph) as session:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def(
                {"image": x}, {"probs": probs}
            )
            builder.add_meta_graph_and_variables(
                session, ["serve"], {"serving_default": signature}, main_op=save
            )
            builder.save()


@pytest.mark.parametrize("build", [_graph_in_a_string, _tf1_main_op])
def test_a_savedmodel_outside_the_allow_list_is_refused(cli, tmp_path, mnist_run, build):
    """Routes a deny-list missed: every command that takes a model refuses it before it runs
    and nothing is written; trusted, the same model does write (the check is what stops it)."""
    marker = tmp_path / "written"
    path = tmp_path / "model"
    build(path, marker)
    image = write_image(tmp_path / "seven.png", np.zeros((28, 28), np.uint8))
    commands = [
        ("predict", path, image, "--json"),
        ("evaluate", path, "--dataset", "mnist", "--no-plots"),
        ("compare", mnist_run, path, "--dataset", "mnist", "--no-plots"),
        ("compare", path, mnist_run, "--dataset", "mnist", "--no-plots"),
        ("export", path, "--format", "onnx", "--out", tmp_path / "out.onnx"),
        ("benchmark", path),
    ]
    for args in commands:
        r = cli(*args)
        assert r.exit_code in (1, 2), (args, r.stderr)
        assert not list(tmp_path.glob("written*")), args
        assert "Traceback" not in r.stderr
    r = cli("predict", path, image, "--json")
    assert "refused" in r.stderr and "--trust-model" in r.stderr
    expected = "DatasetFromGraph" if build is _graph_in_a_string else "SaveV2 (on the path"
    assert expected in r.stderr
    r = cli("predict", path, image, "--json", "--trust-model")
    assert r.exit_code == 0, r.stderr
    assert list(tmp_path.glob("written*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "fastnet", "resnet", "vit", "rnn", "mobilenet_v2"])
def test_tfvisions_own_savedmodels_pass_the_op_check(tmp_path, name):
    from tfvision_cli.artifacts.scan import unsafe_ops
    from tfvision_cli.models.registry import create_model
    from tfvision_cli.tf_import import quiet_stderr

    model = create_model(name, (16, 16, 1), 3)
    model(np.zeros((1, 16, 16, 1), np.uint8))
    with quiet_stderr():
        model.export(str(tmp_path / name), format="tf_saved_model", verbose=False)
    assert unsafe_ops(tmp_path / name) == set()


# 7. YAML bombs, deep nesting, huge files

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_yaml_bombs_are_refused_at_once(cli, tmp_path, digits_run):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    start = time.perf_counter()
    r = cli("train", "digits", "--config", bomb)
    assert r.exit_code == 2 and "aliases" in r.stderr
    (digits_run / "config.yaml").write_text(BOMB)
    r = cli("runs", "show", digits_run)
    assert r.exit_code == 2 and "aliases" in r.stderr
    deep = tmp_path / "deep.yaml"
    deep.write_text("model_options: " + "[" * 100 + "]" * 100 + "\n")
    r = cli("train", "digits", "--config", deep)
    assert r.exit_code == 2 and "nested" in r.stderr
    assert time.perf_counter() - start < 5


def test_numeric_options_have_upper_bounds(cli):
    for args in (
        ("--image-size", "60000"),
        ("--epochs", "10000000"),
        ("--batch-size", "100000000"),
        ("--learning-rate", "inf"),
    ):
        r = cli("train", "digits", *args)
        assert r.exit_code == 2, (args, r.stderr)
        assert "at most" in r.stderr or "must be" in r.stderr, (args, r.stderr)


# 8. and 9. markup, escape sequences, mathtext in names


def test_markup_in_paths_is_shown_literally_and_breaks_nothing(cli, tmp_path, monkeypatch):
    data = _shapes(tmp_path / "ds[" / "v1]", ["a", "b"])  # the path ds[/v1]
    run_dir = tmp_path / "runs" / "mk[/b]"
    r = cli("train", data, "--model", "mlp", "--epochs", "1", "--run-dir", run_dir)
    assert r.exit_code == 0, r.stderr
    assert "mk[/b]" in r.stderr and "data: v1] " in r.stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    monkeypatch.setenv("TFVISION_RUNS_DIR", str(run_dir.parent))
    assert cli("runs", "list").exit_code == 0
    r = cli("runs", "list", "--json")
    assert r.exit_code == 0 and r.json()[0]["run_dir"] == str(run_dir)


def test_escape_sequences_markup_and_dollars_in_class_names(cli, tmp_path):
    names = ["\x1b]0;pwned\x07title", "\x1b[2Jclear", "[x] dog", "$5_$10"]
    data = _shapes(tmp_path / "classes", names)
    run_dir = tmp_path / "run"
    r = cli("train", data, "--model", "mlp", "--epochs", "1", "--run-dir", run_dir)
    assert r.exit_code == 0, r.stderr
    r = cli("evaluate", run_dir, "--dataset", data, "--split", "train")
    assert r.exit_code == 0, r.stderr  # the plots with "$5_$10" drew
    out = r.stdout + r.stderr
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2Jclear" in out and "[x] dog" in out and "$5_$10" in out
    assert (run_dir / "confusion_matrix.png").is_file()
    r = cli("predict", run_dir, data / "[x] dog")
    assert "\x1b" not in r.stdout + r.stderr


# 10. one damaged run.json


@pytest.mark.parametrize(
    "damage", ['{"created": "yesterday", "tfvision": "0.1.0"}', '{"status": "runn', "[1, 2]"]
)
def test_a_damaged_run_json_hides_only_that_run(cli, tmp_path, digits_run, damage, monkeypatch):
    monkeypatch.setenv("TFVISION_RUNS_DIR", str(digits_run.parent))
    broken = digits_run.parent / "broken-run"
    broken.mkdir()
    (broken / "run.json").write_text(damage)
    time.sleep(0.01)
    r = cli("runs", "list", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {Path(row["run_dir"]).name: row for row in r.json()}
    assert rows["broken-run"]["status"] == "unreadable"
    assert rows["digits-run"]["status"] == "completed"
    assert cli("runs", "list").exit_code == 0
    r = cli("runs", "show", "latest", "--json")
    assert r.exit_code == 0 and r.json()["run_dir"] == str(digits_run)
    r = cli("runs", "show", broken)
    assert r.exit_code == 1 and r.stderr.count("error:") == 1


# 11. SIGTERM


def _term_when(args: list[str], appears, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + timeout
    while not appears() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.parametrize("command", ["export", "preprocess"])
def test_sigterm_exits_130_and_leaves_no_temporary(
    cli, tmp_path, digits_run, image_folder, command
):
    parent = tmp_path / "out"
    parent.mkdir()
    if command == "export":
        args = tfvision_cmd("export --format savedmodel --no-verify", digits_run, "--out")
    else:
        args = tfvision_cmd("preprocess", image_folder, "--out")
    temps = lambda: list(parent.glob(".target.tfvision-tmp-*"))  # noqa: E731
    r = _term_when([*args, str(parent / "target")], lambda: bool(temps()))
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr and "interrupted" in r.stderr
    assert not temps() and not (parent / "target").exists()


@pytest.mark.parametrize("instant", ["after mkdir", "between the renames"])
def test_an_interrupt_at_the_worst_instant_leaves_old_or_new_and_no_temporary(
    tmp_path, monkeypatch, instant
):
    """The race CI once hit: SIGTERM the moment the temporary folder appeared."""
    import os

    from tfvision_cli import files

    target = tmp_path / "target"
    with files.atomic_dir(target, "export") as tmp:
        (tmp / "a.txt").write_text("old")
    calls = []
    if instant == "after mkdir":
        real = Path.mkdir

        def mkdir(self, *a, **k):
            real(self, *a, **k)
            if files.is_temporary(self.name):
                raise KeyboardInterrupt

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        real = os.rename

        def rename(src, dst):
            real(src, dst)
            calls.append(dst)
            if len(calls) == 1:
                raise KeyboardInterrupt

        monkeypatch.setattr(files.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt), files.atomic_dir(target, "export", force=True) as tmp:
        (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in target.iterdir()) == [files.MARKER, "a.txt"]


def test_an_archive_is_extracted_under_the_output_and_always_removed(
    tmp_path, image_folder, monkeypatch
):
    import shutil

    archive = Path(shutil.make_archive(str(tmp_path / "photos"), "zip", image_folder))
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    r = run(tfvision_cmd("preprocess", archive, "--out", tmp_path / "prepared"))
    assert r.returncode == 0, r.stderr
    assert not [p for p in system_tmp.iterdir() if "extract" in p.name]
    assert not list((tmp_path / "prepared").rglob(".tfvision-extract"))
    assert not list(tmp_path.glob(".prepared.tfvision-tmp-*"))


# 12. file names in any encoding, symbolic links in a run


def test_predict_reads_undecodable_file_names_under_a_strict_utf8_locale(tmp_path, digits_run):
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = write_image(folder / "good.png", np.zeros((8, 8), np.uint8))
    bad = os.path.join(os.fsencode(folder), b"bad\xff.png")
    with open(bad, "wb") as f:
        f.write(good.read_bytes())
    stdin = os.fsencode(good) + b"\n" + bad + b"\n"
    env = subprocess_env(LC_ALL="C.UTF-8", PYTHONUTF8="0")
    r = subprocess.run(
        tfvision_cmd("predict", digits_run, "-"),
        input=stdin,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(records) == 2 and all("class_name" in rec for rec in records)


def test_a_symlinked_history_is_refused_not_followed(cli, tmp_path, digits_run):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("precious\n")
    (digits_run / "history.csv").unlink()
    (digits_run / "history.csv").symlink_to(outside)
    r = cli("train", "--run-dir", digits_run, "--epochs", "2")
    assert r.exit_code == 2 and "symbolic link" in r.stderr
    assert outside.read_text() == "precious\n"


# neighbours: build and pictures


def test_build_and_preview_never_replace_a_users_file(cli, tmp_path):
    mine = tmp_path / "model.keras"
    mine.write_text("my own model")
    r = cli("build", "mlp", "--input-shape", "8,8,1", "--out", mine)
    assert r.exit_code == 2 and mine.read_text() == "my own model"
    picture = write_image(tmp_path / "preview.png", np.full((4, 4), 7, np.uint8))
    before = picture.read_bytes()
    r = cli("data", "preview", "digits", "--out", picture)
    assert r.exit_code == 2 and picture.read_bytes() == before
    # tfvision's own picture is replaced as before
    ours = tmp_path / "ours.png"
    assert cli("data", "preview", "digits", "--out", ours).exit_code == 0
    assert cli("data", "preview", "digits", "--out", ours).exit_code == 0


def _create(args):
    from tfvision_cli.files import create_text

    path, text = args
    return create_text(Path(path), text)


def test_processes_creating_one_file_at_once_one_wins_and_it_is_whole(tmp_path):
    """Two `tune` processes starting one study at once: exactly one writes the study file, the
    others see it whole (the race a CI run under load hit: one saw the other's temporary)."""
    import multiprocessing

    target = tmp_path / "study" / "tune.yaml"
    texts = [f"writer {i}\n" * 2000 for i in range(8)]
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        won = pool.map(_create, [(str(target), t) for t in texts])
    assert sum(won) == 1
    assert target.read_text() == texts[won.index(True)]
    assert [p.name for p in target.parent.iterdir()] == ["tune.yaml"]


# 10. Smaller hostile inputs: odd names, long names, archives Python cannot read, NaN weights


def test_a_class_folder_name_that_is_not_utf8_is_a_class_everywhere(cli, tmp_path):
    root = _shapes(tmp_path / "src", ["plain", "other"])
    os.rename(root / "other", os.path.join(os.fsencode(root), b"caf\xe9"))  # Latin-1 bytes
    out = tmp_path / "prepared"
    r = cli("preprocess", root, "--out", out, "--image-size", "16", "--channels", "1")
    assert r.exit_code == 0, r.stderr
    names = cli("data", "info", out, "--json").json()["class_names"]
    raw = cli("data", "info", root, "--json").json()["class_names"]
    assert names == raw == ["caf\\xe9", "plain"]


def test_a_legal_long_out_name_is_written(cli, tmp_path, digits_run):
    out = tmp_path / ("m" * 236 + ".onnx")  # 241 bytes: legal, but not with 35 more
    r = cli("export", digits_run, "--format", "onnx", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert out.is_file() and (tmp_path / (out.name + ".json")).is_file()
    assert not [p for p in tmp_path.iterdir() if "tfvision-tmp" in p.name]


def _zip_with(path: Path, patch) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/one.png", (Path(__file__).parent / "__init__.py").read_bytes())
    data = bytearray(path.read_bytes())
    patch(data)
    path.write_bytes(bytes(data))
    return path


def test_encrypted_and_deflate64_zips_are_one_sentence_and_exit_2(cli, tmp_path):
    def encrypted(data):  # the "encrypted" flag bit, in the local and the central header
        for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = data.index(sig)
            data[i + at] |= 1

    def deflate64(data):  # compression method 9
        for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            i = data.index(sig)
            data[i + at : i + at + 2] = (9).to_bytes(2, "little")

    for patch, words in ((encrypted, "is encrypted"), (deflate64, "deflate64")):
        archive = _zip_with(tmp_path / f"{patch.__name__}.zip", patch)
        r = cli("preprocess", archive, "--out", tmp_path / f"out-{patch.__name__}")
        assert r.exit_code == 2 and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and r.stderr.count("error:") == 1
        assert not (tmp_path / f"out-{patch.__name__}").exists()


def test_a_model_with_nan_weights_is_not_compared_as_if_it_worked(cli, tmp_path, digits_run):
    from tfvision_cli.models.io import load_model, save_model

    model = load_model(digits_run / "model.keras")
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    broken = save_model(model, tmp_path / "broken.keras")
    for args in (
        ("compare", digits_run, broken, "--no-plots"),
        ("evaluate", broken, "-d", "digits"),
    ):
        r = cli(*args)
        assert r.exit_code == 1 and "NaN or infinite probabilities" in r.stderr, r.stderr
