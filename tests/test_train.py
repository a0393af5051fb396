"""`tfvision train` end to end on real data, through the real CLI."""

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import subprocess_env, tfvision_cmd
from tfvision_cli.models.registry import list_models
from tfvision_cli.training.callbacks import Backup


def _train(cli, *args):
    r = cli("train", *args, "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    return Path(out["run_dir"]), out["metrics"]


def test_train_digits_writes_a_complete_run(cli, tmp_path):
    run, m = _train(cli, "digits", "--model", "mlp", "--epochs", "3", "--run-dir", tmp_path / "r")
    assert run == tmp_path / "r"
    for name in (
        "config.yaml",
        "model.keras",
        "history.csv",
        "metrics.json",
        "classes.json",
        "run.json",
    ):
        assert (run / name).is_file(), name
    assert (run / "logs").is_dir() and (run / "backup").is_dir()
    assert json.loads((run / "metrics.json").read_text()) == m
    for key in ("test_accuracy", "test_loss", "val_accuracy", "epochs", "train_seconds"):
        assert key in m
    assert m["epochs"] == 3 and m["test_examples"] == 359
    assert m["test_accuracy"] > 0.8  # an MLP learns 8x8 digits in 3 epochs
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 3
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "mlp" and config["dataset"] == "digits"
    # model.keras is the model the metrics describe: recompute its test accuracy independently
    import numpy as np

    from tfvision_cli.data.catalog import open_dataset
    from tfvision_cli.models.io import load_model

    x, y = open_dataset("digits").arrays("test")
    predicted = load_model(run / "model.keras").predict(x, verbose=0).argmax(1)
    assert abs(float(np.mean(predicted == y)) - m["test_accuracy"]) < 1e-6


def test_json_output_is_exactly_one_object(cli, tmp_path):
    r = cli("train", "digits", "--model", "mlp", "--epochs", "1", "--json")
    assert r.exit_code == 0
    assert len(r.stdout.strip().splitlines()) == 1
    assert set(json.loads(r.stdout)) == {"run_dir", "metrics"}
    assert "epoch 1/1" in r.stderr  # progress went to stderr, one plain line per epoch


def test_runs_list_and_latest(cli):
    run, _ = _train(cli, "digits", "--model", "mlp", "--epochs", "1")
    rows = cli("runs", "list", "--json").json()
    assert rows[0]["run_dir"] == str(run) and rows[0]["status"] == "completed"
    assert cli("runs", "show", "latest", "--json").json()["run_dir"] == str(run)


def test_same_seed_same_metrics(cli):
    a = _train(cli, "digits", "--model", "cnn", "--epochs", "2", "--seed", "3")[1]
    b = _train(cli, "digits", "--model", "cnn", "--epochs", "2", "--seed", "3")[1]
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]
    assert a["val_accuracy"] == b["val_accuracy"]


def test_config_file_and_flags_override_it(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: mlp\nepochs: 2\nlearning_rate: 0.01\nschedule: cosine\n")
    run, m = _train(cli, "digits", "--config", cfg, "--epochs", "1")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "mlp" and config["schedule"] == "cosine"
    assert config["epochs"] == 1 and m["epochs"] == 1


def test_config_unknown_key_suggests(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("modle: mlp\n")
    r = cli("train", "digits", "--config", cfg)
    assert r.exit_code == 2 and "'modle'" in r.stderr and "model" in r.stderr


@pytest.fixture(scope="module")
def baseline_digest(tmp_path_factory) -> str:
    """The weights digest of the default recipe on digits (cnn, 2 epochs, seed 0)."""
    from typer.testing import CliRunner

    from tfvision_cli.cli import app

    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    args = ["train", "digits", "--model", "cnn", "--epochs", "2", "--run-dir", str(run_dir)]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["metrics"]["weights_sha256"]


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "learning_rate": 0.1, "schedule": "one-cycle"},
        {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "cosine", "warmup_epochs": 0.5},
        {"augment": "standard", "label_smoothing": 0.0},
        {"early_stopping": 1, "epochs": 4},
    ],
)
def test_training_options_change_what_is_trained(cli, tmp_path, options, baseline_digest):
    """Each option reaches the run: recorded in config.yaml, the trained weights differ from the
    default recipe's with the same seed, and the model still learns (chance is 0.1)."""
    import yaml

    args = [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    if "epochs" not in options:
        args += ["--epochs", "2"]
    run, m = _train(cli, "digits", "--model", "cnn", "--run-dir", tmp_path / "r", *args)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: recorded[k] for k in options} == options
    assert m["weights_sha256"] != baseline_digest
    assert m["test_accuracy"] > 0.5, m
    assert 1 <= m["epochs_this_session"] <= recorded["epochs"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_on_mnist(cli, mnist, name):
    _, m = _train(
        cli,
        "mnist",
        "--model",
        name,
        "--epochs",
        "1",
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "32",
    )
    assert m["epochs_this_session"] == 1 and m["test_examples"] == 10000
    assert np.isfinite(m["test_loss"]) and m["params"] > 0


# keras.applications nets take a minute each to trace on 2 cores: they are trained on MNIST
# above (grey 28x28 -> RGB 32x32, their harder input path) and not again here.
@pytest.mark.parametrize(
    "name", [n for n in list_models() if n not in ("mobilenet_v2", "efficientnet_b0")]
)
def test_every_model_learns_a_tiny_colour_task(cli, tmp_path, name, colour_folder):
    """Colour decides the class: every model must learn it well above chance (1/3)."""
    run, m = _train(
        cli,
        str(colour_folder),
        "--model",
        name,
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--validation-split",
        "0",
    )
    r = cli("evaluate", run, "--split", "train", "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    assert r.json()["accuracy"] >= 0.7, (name, r.json()["accuracy"])


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """A raw class-per-folder tree of 32x32 RGB images (colour decides the class)."""
    import numpy as np

    from tests.conftest import write_image

    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        for i in range(16):
            img = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            img[..., c] += 150
            write_image(root / name / f"{i}.png", img)
    return root


def test_mnist_steps_reports_throughput(cli, mnist):
    start = time.perf_counter()
    run, m = _train(cli, "mnist", "--model", "mlp", "--epochs", "2", "--steps-per-epoch", "50")
    elapsed = time.perf_counter() - start
    assert m["train_images_per_second"] > 0 and m["global_batch_size"] == 128
    assert m["test_accuracy"] > 0.85  # 100 steps of an MLP on real MNIST
    # where the time went (issue 37): every stage, in order, adding up to no more than the call
    stages = m["stage_seconds"]
    assert list(stages) == [
        "tensorflow_import",
        "data",
        "build",
        "first_step",
        "steps",
        "validation",
        "test_and_save",
    ]
    assert all(v >= 0 for v in stages.values()) and stages["validation"] > 0
    assert sum(stages.values()) <= elapsed
    fit = stages["first_step"] + stages["steps"] + stages["validation"]
    assert fit == pytest.approx(m["train_seconds"], abs=0.01)
    # MNIST's small images: 8 batches a call, decided from the data and recorded
    assert yaml.safe_load((run / "config.yaml").read_text())["steps_per_execution"] == 8


def test_mirrored_on_two_logical_cpus(tmp_path, mnist):
    run = tmp_path / "mirrored"
    r = subprocess.run(
        tfvision_cmd(
            "train mnist --model cnn --epochs 1 --steps-per-epoch 20 --batch-size 32 "
            "--strategy mirrored --json --run-dir",
            run,
        ),
        env=subprocess_env(TFVISION_CPU_REPLICAS=2),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert m["strategy"] == "mirrored" and m["replicas"] == 2 and m["global_batch_size"] == 64
    assert m["test_accuracy"] > 0.5


def test_killed_run_resumes_to_completion(tmp_path, mnist):
    run = tmp_path / "killed"
    args = tfvision_cmd(
        "train mnist --model mlp --epochs 4 --steps-per-epoch 150 --batch-size 64 --run-dir", run
    )
    proc = subprocess.Popen(
        args, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    history, backup = run / "history.csv", run / "backup"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until at least one epoch is finished
        if Backup.epochs_done(backup) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = Backup.epochs_done(backup)  # what the backup committed, not the log
    assert 1 <= done_before < 4, "the kill should land mid-training"
    r = subprocess.run(
        tfvision_cmd("train --resume --json --run-dir", run),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert m["epochs"] == 4
    assert m["epochs_this_session"] == 4 - done_before
    rows = list(csv.DictReader(history.open()))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2, 3]
    from tfvision_cli.models.io import load_model

    assert load_model(run / "model.keras").outputs[0].shape[-1] == 10


def test_sigterm_is_an_interruption_that_says_how_to_resume(tmp_path, mnist):
    run = tmp_path / "term"
    proc = subprocess.Popen(
        tfvision_cmd("train mnist --model mlp --epochs 50 --steps-per-epoch 100 --run-dir", run),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "history.csv").is_file():
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "--resume" in err and "Traceback" not in err
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_an_interrupt_that_a_library_turned_into_another_error_still_says_how_to_resume(
    cli, monkeypatch
):
    """TensorFlow raises TypeError from a KeyboardInterrupt that lands while it traces: once a
    signal came, train still reports the interruption with its --resume hint (exit 130)."""
    from tfvision_cli import interrupts

    def interrupted_while_tracing(config, **kwargs):
        interrupts.requested.set()  # what the signal handler does first
        raise TypeError("<built-in function ...> returned a result with an exception set")

    monkeypatch.setattr("tfvision_cli.training.session.train", interrupted_while_tracing)
    r = cli("train", "digits", "--epochs", "1")
    assert r.exit_code == 130 and "--resume" in r.stderr, r.stderr
    monkeypatch.setattr(interrupts.requested, "set", lambda: None)  # no signal: a plain bug
    r = cli("train", "digits", "--epochs", "1")
    assert r.exit_code == 1 and "TypeError" in r.stderr and "--resume" not in r.stderr


@pytest.mark.parametrize("signalled, status", [(True, "interrupted"), (False, "failed")])
def test_the_run_records_an_interruption_that_came_as_another_error(tmp_path, signalled, status):
    """run.json said "failed" for such a run while the CLI said how to resume it (the
    clean-clone suite caught it in test_sigterm_is_an_interruption_that_says_how_to_resume)."""
    from types import SimpleNamespace

    from tfvision_cli import interrupts
    from tfvision_cli.config import TrainConfig
    from tfvision_cli.runs import RunDir
    from tfvision_cli.training.run import run_lifecycle

    run = RunDir(tmp_path / "run")
    info = SimpleNamespace(class_names=["a", "b"], source="test")
    try:
        if signalled:
            interrupts.requested.set()
        with (
            pytest.raises(TypeError),
            run_lifecycle(run, False, True, TrainConfig(), info, (8, 8, 1)),
        ):
            raise TypeError("<built-in function ...> returned a result with an exception set")
    finally:
        interrupts.requested.clear()
    assert run.read_state()["status"] == status


@pytest.mark.slow
def test_default_recipe_reaches_99_percent_on_mnist(cli, mnist):
    """`tfvision train mnist` with no other option: the headline promise."""
    _, m = _train(cli, "mnist")
    assert m["test_accuracy"] >= 0.99, m


def test_presets_are_settings_that_flags_override():
    from tfvision_cli.config import resolve

    fast = resolve(None, None, {"preset": "fast"})
    fast_settings = (fast.model, fast.epochs, fast.batch_size, fast.learning_rate)
    assert fast_settings == ("fastnet_xs", 2, 256, 0.012)
    assert resolve(None, None, {"preset": "fast", "epochs": 3}).epochs == 3
    ref = resolve(None, None, {"preset": "keras-example"})
    assert (ref.model, ref.epochs, ref.batch_size, ref.schedule) == ("cnn", 15, 128, "constant")


def test_learning_rate_schedules_shape():
    from tfvision_cli.config import resolve
    from tfvision_cli.training.optim import learning_rate

    steps = 100
    one_cycle = learning_rate(resolve(None, None, {"epochs": 4}), steps)
    lrs = [float(one_cycle(s)) for s in (0, 99, 100, 399)]
    assert lrs[0] == pytest.approx(3e-3 / 25)  # starts at peak/25
    assert lrs[2] == pytest.approx(3e-3, rel=1e-3)  # peak after 25% of training
    assert lrs[3] < 1e-5  # annealed
    cosine = learning_rate(
        resolve(None, None, {"schedule": "cosine", "warmup_epochs": 0, "epochs": 2}), steps
    )
    assert float(cosine(0)) == pytest.approx(3e-3) and float(cosine(199)) < 1e-6
    assert learning_rate(
        resolve(None, None, {"schedule": "constant", "warmup_epochs": 0, "epochs": 2}), steps
    ) == pytest.approx(3e-3)
    # linear scaling with replicas
    assert learning_rate(
        resolve(None, None, {"schedule": "constant", "warmup_epochs": 0, "epochs": 2}),
        steps,
        replicas=2,
    ) == pytest.approx(6e-3)


def test_a_diverging_loss_stops_keeps_the_good_model_and_says_how_to_resume(
    cli, tmp_path, monkeypatch
):
    import dataclasses

    from tfvision_cli.models.io import load_model
    from tfvision_cli.training import optim

    run, _ = _train(cli, "digits", "--model", "mlp", "--epochs", "1", "--run-dir", tmp_path / "r")
    good = (run / "model.keras").read_bytes()
    # Adam at a rate of 1e30 overflows float32 within the first steps of epoch 2 (a rate no
    # option accepts: --learning-rate is at most 10, so the optimizer is given it directly)
    real = optim.make_optimizer
    with monkeypatch.context() as m:
        m.setattr(
            optim,
            "make_optimizer",
            lambda config, *a: real(dataclasses.replace(config, learning_rate=1e30), *a),
        )
        r = cli("train", "--run-dir", str(run), "--epochs", "3", "--learning-rate", "5")
    assert r.exit_code == 1, r.stderr
    assert "NaN or infinite in epoch 2" in r.stderr and "Traceback" not in r.stderr
    assert f"--run-dir {run} --learning-rate 0.5" in r.stderr  # the way back, spelled out
    assert (run / "model.keras").read_bytes() == good  # the last good model, untouched
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"
    load_model(run / "model.keras")
    # resuming with a sane rate finishes the requested epochs from the last good checkpoint
    run2, m = _train(cli, "--run-dir", str(run), "--epochs", "3", "--learning-rate", "0.001")
    assert run2 == run and m["epochs_this_session"] == 2 and m["test_accuracy"] > 0.8
    assert len(list(csv.DictReader((run / "history.csv").open()))) == 3


def test_a_20_step_quick_trial_saves_a_usable_model(cli, mnist, tmp_path):
    """BatchNorm's moving statistics lag far behind 20 steps of fast-changing weights: the
    saved model scored 0.11 on the test split before they were recomputed (issue 14)."""
    run, m = _train(
        cli, "mnist", "--epochs", "1", "--steps-per-epoch", "20", "--run-dir", tmp_path / "q"
    )
    note = m["notes"]["batch_norm_recalibration"]
    assert note["kept"] and note["after"] > note["before"]
    assert m["test_accuracy"] >= 0.5
    r = cli("evaluate", run, "--json", "--no-plots")  # what model.keras holds, reloaded
    assert r.exit_code == 0 and abs(r.json()["accuracy"] - m["test_accuracy"]) < 1e-3


def test_batch_norm_recalibration_averages_the_batches_statistics_by_their_size():
    """Precise BN: each BatchNorm's moving mean and variance become the size-weighted average of
    its batches' statistics under the final weights; the layer's momentum is left as it was."""
    import keras

    from tfvision_cli.training.model import recalibrate_batch_norm

    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(2, kernel_initializer="identity")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(hidden))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(3.0, 2.0, (n, 2)).astype("float32"), None) for n in (3, 5)]
    assert recalibrate_batch_norm(model, batches) == 2
    bn = model.layers[-1]
    stacked = [b[0] for b in batches]
    mean = sum(len(b) * b.mean(0) for b in stacked) / 8
    variance = sum(len(b) * b.var(0) for b in stacked) / 8
    assert np.allclose(bn.moving_mean.numpy(), mean, atol=1e-5)
    assert np.allclose(bn.moving_variance.numpy(), variance, atol=1e-4)
    assert bn.momentum == 0.9


def test_an_interruption_swallowed_where_it_landed_still_stops_the_run(cli, tmp_path, monkeypatch):
    """Keras builds its metrics inside bare `except:` blocks on the first step: a SIGTERM that
    lands there loses its KeyboardInterrupt (a CI run once trained on to exit 0). The handler's
    flag is what stops the run then; here the flag is set as the handler sets it, no exception."""
    from tfvision_cli import interrupts
    from tfvision_cli.training import callbacks

    real = callbacks.StopOnNaN.on_train_batch_end

    def signalled_at_step_3(self, batch, logs=None):
        if batch >= 3:  # the first call that ends past step 3 (8 steps a call here)
            interrupts.requested.set()
        return real(self, batch, logs)

    monkeypatch.setattr(callbacks.StopOnNaN, "on_train_batch_end", signalled_at_step_3)
    run = tmp_path / "r"
    r = cli("train", "digits", "--model", "mlp", "--epochs", "50", "--run-dir", run)
    assert r.exit_code == 130, r.stderr
    assert "--resume" in r.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert len((run / "history.csv").read_text().splitlines()) <= 2  # stopped in epoch 1
    interrupts.requested.clear()


def test_the_optimizer_is_built_at_compile_so_the_train_step_is_traced_once():
    """Adam's slots made inside the first trace made TensorFlow trace the step twice."""
    from tfvision_cli.config import resolve
    from tfvision_cli.models.registry import create_model
    from tfvision_cli.training.distribute import choose_strategy
    from tfvision_cli.training.model import compile_model

    model = create_model("mlp", (8, 8, 1), 3)
    config = resolve(None, None, {"epochs": 2})
    compile_model(model, config, steps=10, placement=choose_strategy("auto"))
    assert model.optimizer.built
    momentum = [v for v in model.optimizer.variables if v.path.endswith("_momentum")]
    assert len(momentum) == len(model.trainable_variables) > 0
