"""Shell completion: names tfvision knows, offered without importing TensorFlow."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path


def starting_with(names: Iterable[str]) -> Callable[[str], list[str]]:
    names = list(names)
    return lambda incomplete: [n for n in names if n.startswith(incomplete)]


def _folders(incomplete: str) -> list[str]:
    base = Path(incomplete).parent if os.sep in incomplete else Path(".")
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    found = []
    for p in entries:
        text = str(p) if os.sep in incomplete else p.name
        if p.is_dir() and text.startswith(incomplete) and not p.name.startswith("."):
            found.append(text + os.sep)
    return found


def complete_models(incomplete: str) -> list[str]:
    from tfvision_cli.models import list_models

    return [n for n in list_models() if n.startswith(incomplete)]


def complete_datasets(incomplete: str) -> list[str]:
    from tfvision_cli.data.catalog import KNOWN_TFDS, builtin_names

    names = builtin_names() + [row[0] for row in KNOWN_TFDS]
    return [n for n in names if n.startswith(incomplete)] + _folders(incomplete)


def complete_runs(incomplete: str) -> list[str]:
    """`latest`, the runs under the runs folder, and folders."""
    from tfvision_cli.runs import list_runs

    runs = ["latest", *(str(run.path) for run, _ in list_runs())]
    return [r for r in runs if r.startswith(incomplete)] + _folders(incomplete)
