"""Errors the core raises; the CLI turns them into one line and an exit code.

Exit codes: 0 success, 1 failure (TfvisionError), 2 usage error (UsageError),
130 interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TfvisionError(Exception):
    """A failure a user can act on: printed as one line, exit code 1."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(TfvisionError):
    """Bad names, values or paths given by the user: exit code 2."""

    exit_code = 2


class DataError(TfvisionError):
    """A dataset that cannot be found, read or prepared."""


class Interrupted(TfvisionError):
    """Ctrl-C or SIGTERM: exit code 130."""

    exit_code = 130


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean: a, b?' for the close matches of name among choices, or ''."""
    matches = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
