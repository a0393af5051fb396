"""Option parsing shared by commands (no TensorFlow here)."""

from __future__ import annotations

import typer

from tfvision_cli.config import MAX_IMAGE_SIDE, load_yaml
from tfvision_cli.errors import UsageError

TRUST_MODEL = typer.Option(
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
