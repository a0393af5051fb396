"""The command itself: start-up cost, --version, exit codes, help for every command."""

import subprocess
import sys
import time

import pytest

from tfvision_cli import __version__

COMMANDS = [
    [],
    ["data"],
    ["data", "list"],
    ["data", "download"],
    ["data", "info"],
    ["data", "preview"],
    ["preprocess"],
    ["build"],
    ["train"],
    ["models"],
    ["models", "list"],
    ["models", "show"],
    ["runs"],
    ["runs", "list"],
]


def test_every_help_answers_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tfvision_cli.cli import app\n"
        f"for args in {COMMANDS!r}:\n"
        "    r = CliRunner().invoke(app, args + ['--help'])\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "    assert 'Usage' in r.output, args\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules, 'keras was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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
    assert "epochs must be a positive integer" in r.stderr
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
        ("train digits --batch-size 0", "batch size must be a positive integer"),
        ("train digits --image-size 0", "--image-size expects"),
        ("train digits --validation-split 1.5", "validation split must be in [0, 1)"),
        ("train digits --learning-rate -1", "learning rate must be a positive number"),
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
