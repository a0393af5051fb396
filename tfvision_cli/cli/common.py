"""Options shared by commands, declared once (as TrainConfig's are), and their parsing (no
TensorFlow here). A command takes them as typed parameters: `as_json: Json = False`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tfvision_cli.config import MAX_IMAGE_SIDE, load_yaml
from tfvision_cli.errors import UsageError


def flag(default: bool, *decls: str, **options):
    """A true/false option: shown without a value placeholder in --help."""
    return typer.Option(default, *decls, metavar="", **options)


def choice(default, *decls: str, choices, help: str, **options):
    """An option whose value is one of choices: listed in --help and completed by the shell.
    The core checks the value (so that every bad name is reported at once, with a suggestion)."""
    from tfvision_cli.cli.complete import starting_with

    choices = tuple(choices)
    return typer.Option(
        default,
        *decls,
        metavar="NAME",
        help=f"{help} One of: {', '.join(choices)}.",
        autocompletion=starting_with(choices),
        **options,
    )


def model_argument(default, help: str):
    """The MODEL argument of evaluate, predict, export, ...: completes `latest` and runs."""
    from tfvision_cli.cli.complete import complete_runs

    return typer.Argument(default, help=help, autocompletion=complete_runs)


def dataset_option(*decls: str, help: str):
    from tfvision_cli.cli.complete import complete_datasets

    return typer.Option(None, *decls, help=help, autocompletion=complete_datasets)


CLASS_MAP = typer.Option(
    None,
    "--class-map",
    help="YAML file of data_name: model_name pairs (null drops a class), for data whose class "
    "names differ from the model's. Without it, classes are matched by name.",
)

PREDICTION_SET = typer.Option(
    None,
    "--prediction-set",
    help="Conformal prediction sets covering the true class with this probability (e.g. 0.9; "
    "needs `tfvision calibrate`).",
)
MIN_CONFIDENCE = typer.Option(
    None,
    "--min-confidence",
    help="Abstain below this confidence (0-1): no label, the decision left to a person.",
)

TRUST_MODEL = flag(
    False,
    "--trust-model",
    help="Run a SavedModel without first checking that its graph holds only ops a classifier "
    "needs (no file, Python or network ops). Only for models whose maker you trust.",
)


def parse_ints(
    text: str, count: int | tuple[int, ...], option: str, maximum: int = MAX_IMAGE_SIDE
) -> tuple[int, ...]:
    """'28,28,1' -> (28, 28, 1); count is the allowed number(s) of values."""
    counts = (count,) if isinstance(count, int) else count
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(
            f"{option} expects integers like {','.join(['28'] * counts[-1])}, got {text!r}"
        ) from None
    if len(values) not in counts or min(values) < 1:
        raise UsageError(
            f"{option} expects {' or '.join(map(str, counts))} positive integers, got {text!r}"
        )
    if max(values) > maximum:
        raise UsageError(f"{option} values must be at most {maximum}, got {text!r}")
    return values


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """'28' -> (28, 28); '32,48' -> (32, 48)."""
    if text is None:
        return None
    values = parse_ints(text, (1, 2), "--image-size")
    return (values[0], values[0]) if len(values) == 1 else values  # type: ignore[return-value]


def parse_model_options(items: list[str] | None) -> dict:
    """['depth=32', 'cell=gru'] -> {'depth': 32, 'cell': 'gru'} (YAML scalars)."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--model-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = load_yaml(value, f"--model-option {key.strip()}")
    return options


def run_dir_of(run_dir: Path | None, name: str | None) -> Path | None:
    """The run folder of --run-dir or --name (a run in the runs folder), or None."""
    from tfvision_cli.runs import check_name, runs_root

    if name is None:
        return run_dir
    if run_dir is not None:
        raise UsageError("give --name or --run-dir, not both")
    return runs_root() / check_name(name)


# --help panels: a command's options grouped as a person looks for them
DATA = "Data"
MODEL = "Model"
OPTIMISATION = "Optimisation"
AUGMENTATION = "Augmentation and regularisation"
OUTPUT = "Run and output"
DEVICES = "Devices"


def _complete_runs(incomplete: str) -> list[str]:
    from tfvision_cli.cli.complete import complete_runs

    return complete_runs(incomplete)


# The options several commands share, each declared once.
Json = Annotated[
    bool,
    typer.Option(
        "--json",
        metavar="",
        help="Machine-readable output on stdout (JSON; NDJSON for per-image records); logs "
        "stay on stderr.",
        rich_help_panel=OUTPUT,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", metavar="", help="No progress output.", rich_help_panel=OUTPUT),
]
RunDir = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        help="The run's folder (where it goes, or where it is).",
        autocompletion=_complete_runs,
        rich_help_panel=OUTPUT,
    ),
]
Name = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="Name the run: it goes to the runs folder under this name (what `runs list` shows "
        "and every command takes).",
        rich_help_panel=OUTPUT,
    ),
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option",
        metavar="KEY=VALUE",
        help="KEY=VALUE for the model's builder (repeatable), e.g. depth=32.",
        rich_help_panel=MODEL,
    ),
]


def examples(*commands: str) -> str:
    """A command's --help epilog: one or two lines to copy."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {c}" for c in commands)
