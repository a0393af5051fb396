"""The one place that prints: Rich on stderr for people, JSON on stdout for programs."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tfvision_cli.text import visible

# Logs, tables and progress go to stderr; stdout carries data only.
err = Console(stderr=True, highlight=False)
# Tables that *are* the command's data (data list, models list) go to stdout on a terminal.
out = Console(highlight=False)

_quiet = False
_prefix = ""  # "[worker 1] " in a multi-worker run: which worker is speaking


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def set_prefix(prefix: str) -> None:
    global _prefix
    _prefix = safe(prefix)


def safe(value: Any) -> str:
    """User-controlled text (a path, a file or class name) for a Rich markup string: markup
    shown literally, control characters and escape sequences shown as visible escapes."""
    return escape(visible(os.fspath(value) if isinstance(value, os.PathLike) else str(value)))


def is_quiet() -> bool:
    return _quiet


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def log(markup: str, **values: Any) -> None:
    """A line of progress for people, on stderr. markup is tfvision's own Rich markup; user
    text goes in values, each escaped: log("[green]wrote[/] {path}", path=out)."""
    if not _quiet:  # piped or logged: one line per line, a long path never broken
        err.print(_prefix + _fill(markup, values), soft_wrap=not err.is_terminal)


def _fill(markup: str, values: dict[str, Any]) -> str:
    if not values:
        return markup
    return markup.format(
        **{k: safe(v) if isinstance(v, str | os.PathLike) else v for k, v in values.items()}
    )


def warn(message: str) -> None:
    err.print(f"{_prefix}[yellow]warning:[/] {safe(message)}", soft_wrap=True)


def error(message: str) -> None:
    err.print(f"{_prefix}[bold red]error:[/] {safe(message)}", soft_wrap=True)


def emit_json(obj: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()


def emit_ndjson(obj: Any) -> None:
    """One line of NDJSON on stdout, flushed so pipelines see it at once."""
    sys.stdout.write(json.dumps(obj, default=_jsonable, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cell(value: Any, style: str = "") -> Text:
    """A table cell shown literally (never parsed as markup), control characters visible."""
    if isinstance(value, Text):
        return value
    return Text("" if value is None else visible(str(value)), style=style)


def table(title: str | None, columns: list[str], rows: list[list[Any]], **kwargs: Any) -> Table:
    """A Rich table; "#name" columns are right-aligned numbers, and a column named "path" (or
    "model") folds onto more lines rather than lose the end that tells two paths apart."""
    t = Table(title=cell(title) if title else None, **kwargs)
    for c in columns:
        justify = (
            "right" if c.startswith("#") or c.lower() in {"params", "count", "classes"} else "left"
        )
        overflow = "fold" if c in ("path", "model") else "ellipsis"
        t.add_column(cell(c[1:] if c.startswith("#") else c), justify=justify, overflow=overflow)
    for r in rows:
        t.add_row(*(cell(v) for v in r))
    return t


def short_paths(paths: list[str]) -> tuple[list[str], str | None]:
    """(paths relative to their common folder, that folder), so that a narrow table shows the
    part that tells them apart; the paths as given when they share no folder."""
    if len(paths) < 2:
        return list(paths), None
    try:
        common = os.path.commonpath([os.path.abspath(p) for p in paths])
    except ValueError:  # relative and absolute, or other drives
        return list(paths), None
    if common in ("", os.sep) or any(os.path.abspath(p) == common for p in paths):
        return list(paths), None
    return [os.path.relpath(os.path.abspath(p), common) for p in paths], common


def print_table(t: Table) -> None:
    """A table that is the command's result: stdout."""
    out.print(t)


@contextmanager
def progress(description: str):
    """A progress bar on a terminal; yields update(done, total). Silent when piped or quiet."""
    if _quiet or not err.is_terminal:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


class TrainingReporter:
    """Renders training events: a Rich bar per epoch on a terminal, a line per epoch otherwise."""

    def __init__(self):
        self.run_path: str | None = None
        self._bar = None
        self._task = None
        self._live = err.is_terminal and not _quiet
        self._legend_shown = False

    # events that are one line of text: the line, with {name} taken from the event
    LINES = {
        "download": "{name} is not prepared yet: downloading it through TFDS",
        "chosen": "from the data: {text}",
        "tracking": "tracking: {text}",
    }

    def __call__(self, kind: str, **d: Any) -> None:
        if kind in self.LINES:
            log(self.LINES[kind], **{k: v for k, v in d.items() if k in ("name", "text")})
        elif kind in ("warning", "skipped"):
            for text in d.get("files", [d.get("text")]):
                warn(text if kind == "warning" else f"skipped {text}")
        elif kind == "run":
            self.run_path = d["path"]
            log(("resuming" if d["resuming"] else "run") + ": {path}", path=d["path"])
        elif kind == "placement":
            if d.get("workers", 1) > 1:
                set_prefix(f"[worker {d['worker']}] ")
            log("devices: {text}", text=d["text"])
        elif kind == "data":
            log(
                "data: {name} " + "x".join(map(str, d["shape"])) + f", {d['classes']} classes; "
                f"train {d['train']:,}, val {d['val']:,}, test {d['test']:,}; "
                f"global batch {d['global_batch']}, {d['steps']} steps/epoch",
                name=d["name"],
            )
        elif kind == "epoch_begin" and self._live:
            self._start_bar(d)
        elif kind == "batch" and self._bar is not None:
            logs = d["logs"]
            self._bar.update(
                self._task,
                completed=d["step"],
                metrics=f"loss {logs.get('loss', 0):.4f} acc {logs.get('accuracy', 0):.4f}",
            )
        elif kind == "epoch_end":
            self._epoch_end(d)

    def _epoch_end(self, d: dict) -> None:
        self.close()
        logs = d["logs"]
        parts = (
            [f"epoch {d['epoch']}/{d['epochs']}"]
            + [f"{k} {v:.4f}" for k, v in logs.items() if k != "learning_rate"]
            + [f"{d['seconds']:.1f}s"]
        )
        log("  ".join(parts))
        if not self._legend_shown and "ce" in logs and "loss" in logs:
            self._legend_shown = True
            log(
                "  (ce: cross-entropy, comparable between runs; loss: what training "
                "minimises, with label smoothing and penalties; val_: the validation split)"
            )

    def _start_bar(self, d: dict) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            "{task.fields[metrics]}",
            console=err,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            f"epoch {d['epoch']}/{d['epochs']}", total=d["steps"], metrics=""
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
