"""The command itself: start-up cost, --version, exit codes, help for every command."""

import os
import re
import subprocess
import sys
import time

import pytest

from tfvision_cli import __version__


def test_every_help_answers_without_importing_tensorflow():
    """Walks the Typer app itself, so that a new command is covered without editing a list."""
    code = (
        "import sys\n"
        "import typer\n"
        "from typer.testing import CliRunner\n"
        "from tfvision_cli.cli import app\n"
        "def paths(group, prefix):\n"
        "    yield prefix\n"
        "    for name, cmd in getattr(group, 'commands', {}).items():\n"
        "        yield from paths(cmd, prefix + [name])\n"
        "found = list(paths(typer.main.get_command(app), []))\n"
        "for args in found:\n"
        "    r = CliRunner().invoke(app, args + ['--help'], env={'COLUMNS': '80'})\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "    assert 'Usage' in r.output, args\n"
        "    assert '<bool>' not in r.output, args  # a flag takes no value, Typer's own too\n"
        "    assert max(map(len, r.output.splitlines())) <= 80, args\n"
        "    cmd = typer.main.get_command(app)\n"
        "    for name in args:\n"
        "        cmd = cmd.commands[name]\n"
        "    ctx = cmd.make_context('tfvision', ['--help'], resilient_parsing=True)\n"
        "    for param in cmd.get_params(ctx):\n"
        "        for flag in param.opts + param.secondary_opts:\n"
        "            if flag.startswith('--'):  # every flag name whole, never cut\n"
        "                assert flag in r.output, (args, flag)\n"
        "    if args and not hasattr(cmd, 'commands'):\n"
        "        assert 'Examples:' in r.output and '$ tfvision ' + args[0] in r.output, args\n"
        "assert len(found) >= 21, found\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules, 'keras was imported'\n"
        "print(len(found))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout) >= 21


def test_train_help_shows_defaults_ranges_and_choices(cli):
    r = cli("train", "--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    text = text.replace("│ ", "")
    assert re.search(r"Epochs to train\..{0,200}Range \[1, 100000\]\. \[default: 4\]", text)
    assert "One of: adam, adamw, sgd, rmsprop, nadam." in text
    assert "[default: fastnet]" in text and "--no-xla" in text
    panels = ["Data", "Model", "Optimisation", "Augmentation and regularisation", "Devices"]
    at = [text.index(f"─ {panel} ─") for panel in [*panels, "Run and output"]]
    assert at == sorted(at)  # the panels in the order a person looks for them


def test_every_training_option_has_a_help_panel():
    from tfvision_cli.cli.options import PANELS, cli_fields

    placed = [name for names in PANELS.values() for name in names]
    assert sorted(placed) == sorted(f.name for f in cli_fields() if f.name != "dataset")


def test_every_training_option_is_a_config_field_declared_once():
    import dataclasses

    import typer

    from tfvision_cli.cli import app
    from tfvision_cli.cli.options import flag_of
    from tfvision_cli.config import TrainConfig

    train = typer.main.get_command(app).commands["train"]
    names = {p.name for p in train.params}
    own = {"ctx", "dataset", "config_file", "model_option", "image_size", "run_dir", "name"}
    own |= {"resume"}
    own |= {"quiet", "as_json", "help"}
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert names - own == {f for f, v in fields.items() if v.metadata["cli"]}
    for param in train.params:
        if param.name in fields and fields[param.name].metadata["cli"]:
            field = fields[param.name]
            assert flag_of(field) in param.opts
            shown = field.default if field.default is not None else field.metadata["shown"]
            assert param.default == shown, param.name
            assert field.metadata["help"] in param.help
    # the spellings of their own still land in TrainConfig fields
    assert {"dataset", "model_options", "image_size"} <= set(fields)


@pytest.mark.parametrize(
    "words, expected",
    [
        ("train --model r", {"resnet", "rnn"}),
        ("train --optimizer ad", {"adam", "adamw"}),
        ("train mn", {"mnist"}),
        ("export --format t", {"tflite"}),
        ("train --preset f", {"fast"}),
    ],
)
def test_shell_completion_offers_names(words, expected):
    env = dict(
        os.environ,
        _TFVISION_COMPLETE="complete_bash",
        COMP_WORDS=f"tfvision {words}",
        COMP_CWORD=str(len(words.split())),
    )
    r = subprocess.run(
        [sys.executable, "-c", "from tfvision_cli.cli import main; main()"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert set(r.stdout.split()) == expected, (r.stdout, r.stderr)


def test_bad_names_fail_at_once_all_of_them_before_tensorflow():
    start = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfvision_cli",
            "train",
            "mnsit",
            "--model",
            "resnte",
            "--optimizer",
            "adm",
            "--model-option",
            "widht=3",
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    assert r.returncode == 2, r.stderr
    assert elapsed < 3, f"took {elapsed:.1f} s"
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1
    for part in ("'mnsit'", "mnist", "'resnte'", "resnet", "'adm'"):
        assert part in line, line
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", "train", "digits", "--model-option", "widht=3"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "'widht'" in r.stderr and "width" in r.stderr


def test_help_is_fast():
    subprocess.run([sys.executable, "-m", "tfvision_cli", "--help"], capture_output=True)
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert r.returncode == 0 and "train" in r.stdout
    assert elapsed < 1.0, f"tfvision --help took {elapsed:.2f} s"


def test_version_through_module_and_console_script(cli):
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", "--version"], capture_output=True, text=True
    )
    assert r.stdout.strip() == f"tfvision {__version__}"
    assert cli("--version").stdout.strip() == f"tfvision {__version__}"


def test_usage_errors_exit_2_with_one_line_and_no_traceback(cli):
    r = cli("train", "digits", "--epochs", "-3")
    assert r.exit_code == 2
    assert "epochs must be in [1, 100000], got -3" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    r = cli("train", "digits", "--learning-rate", "abc")
    assert r.exit_code == 2  # Typer's own parse error
    r = cli("train", "digits", "--model", "resnt")
    assert r.exit_code == 2 and "resnet" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_shell_completion_still_offered(cli):
    r = cli("--help")
    assert "--install-completion" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        ("train digits --batch-size 0", "batch size must be in [1, 65536]"),
        ("train digits --image-size 0", "--image-size expects"),
        ("train digits --validation-split 1.5", "validation split must be in [0, 1)"),
        ("train digits --learning-rate -1", "learning rate must be in (0, 10]"),
        ("train ./no/such/folder", "does not exist"),
        ("preprocess ./no/such/folder --out x", "is not a folder"),
        ("export --format pdf", "unknown format 'pdf'"),
        ("train digits --preset fsat", "Did you mean: fast"),
        ("runs show .", "is not a tfvision run directory"),
        ("evaluate .", "is not a model"),
        ("train digits --model mlp --model-option hidden=abc", "cannot be built with hidden=abc"),
    ],
)
def test_bad_values_are_one_line_usage_errors_and_write_nothing(
    cli, tmp_path, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFVISION_RUNS_DIR", str(tmp_path / "runs"))
    r = cli(*args.split())
    assert r.exit_code == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.rglob("*")), "a failed command left files behind"


def test_log_lines_are_never_wrapped_when_stderr_is_not_a_terminal(capsys):
    """A piped or logged stderr gets a path whole, however long (Rich wraps at 80 otherwise)."""
    from tfvision_cli import console

    path = "/data/" + "/".join(["a-rather-long-folder-name"] * 12) + "/model.keras"
    console.log("model: {path}", path=path)
    assert f"model: {path}\n" in capsys.readouterr().err


def test_the_entry_point_freezes_the_heap_before_the_interpreter_shuts_down():
    """Shutdown's full collections over TensorFlow's objects cost ~0.75 s a command
    (benchmarks/RESULTS.md); main() freezes the heap first, whether the command succeeds or
    fails."""
    code = (
        "import gc, sys\n"
        "from tfvision_cli.cli import main\n"
        "for argv in (['tfvision', '--help'], ['tfvision', 'no-such-command']):\n"
        "    gc.unfreeze(); sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as e:\n"
        "        print('FROZEN', e.code, gc.get_freeze_count() > 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    marked = [line.split()[1:] for line in r.stdout.splitlines() if line.startswith("FROZEN")]
    assert marked == [["0", "True"], ["2", "True"]], r.stderr[-2000:]
