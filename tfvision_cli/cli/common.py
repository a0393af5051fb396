"""Option parsing shared by commands (no TensorFlow here)."""

from __future__ import annotations

import typer

from tfvision_cli.config import MAX_IMAGE_SIDE, load_yaml
from tfvision_cli.errors import UsageError


def flag(default: bool, *decls: str, **options):
    """A true/false option: shown without a value placeholder in --help."""
    return typer.Option(default, *decls, metavar="", **options)


def choice(default, *decls: str, choices, **options):
    """An option whose value is one of choices: listed in --help and completed by the shell.
    The core checks the value (so that every bad name is reported at once, with a suggestion)."""
    from tfvision_cli.cli.complete import starting_with

    choices = tuple(choices)
    return typer.Option(
        default,
        *decls,
        metavar=f"[{'|'.join(choices)}]",
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


def parse_model_options(items: list[str]) -> dict:
    """['depth=32', 'cell=gru'] -> {'depth': 32, 'cell': 'gru'} (YAML scalars)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--model-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = load_yaml(value, f"--model-option {key.strip()}")
    return options


def run_dir_of(values: dict):
    """The run folder of --run-dir or --name (a run in the runs folder), or None."""
    from tfvision_cli.errors import UsageError
    from tfvision_cli.runs import check_name, runs_root

    if values["name"] is None:
        return values["run_dir"]
    if values["run_dir"] is not None:
        raise UsageError("give --name or --run-dir, not both")
    return runs_root() / check_name(values["name"])
