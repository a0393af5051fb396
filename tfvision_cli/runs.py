"""The run directory: its layout, ownership, lock, and finding `latest`.

saved_models/<dataset>-<model>-<YYYYmmdd-HHMMSS>/
    run.json        tfvision's marker: status, dataset, model, created, tfvision version
    run.lock        held (flock) by the process training this run
    config.yaml     the resolved configuration
    classes.json    class names and input shape
    model.keras     the best epoch by validation accuracy
    backup/         BackupAndRestore state (resume after an interruption)
    history.csv     one row per epoch
    metrics.json    test accuracy and loss, validation accuracy, epochs, timings
    logs/           TensorBoard

A folder is a run only if its run.json says tfvision wrote it: a user's folder that happens to
hold a config.yaml is never read as a run, written into or resumed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import write_json
from tfvision_cli.text import first_few

# run.json fields and their types; a run.json that does not fit is "unreadable"
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "tfvision": (str,),
    "status": (str,),
    "dataset": (str,),
    "model": (str,),
    "created": (int, float),
    "best_epoch": (int,),
    "best_value": (int, float),
    "monitor": (str,),
}
_MAX_STATE_BYTES = 1 << 20


def runs_root() -> Path:
    return Path(os.environ.get("TFVISION_RUNS_DIR", "saved_models"))


class RunStateError(TfvisionError):
    """A run.json that is missing, unreadable or not tfvision's."""


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    model = property(lambda self: self.path / "model.keras")
    metrics = property(lambda self: self.path / "metrics.json")
    history = property(lambda self: self.path / "history.csv")
    classes = property(lambda self: self.path / "classes.json")
    calibration = property(lambda self: self.path / "calibration.json")
    backup = property(lambda self: self.path / "backup")
    logs = property(lambda self: self.path / "logs")
    state = property(lambda self: self.path / "run.json")
    lock_file = property(lambda self: self.path / "run.lock")

    def exists(self) -> bool:
        """True when tfvision's run.json is here (a readable one, or a damaged one of ours)."""
        return self.state.is_file() and not self.state.is_symlink()

    def is_ours(self) -> bool:
        """True when run.json is here, readable, and tfvision's."""
        try:
            return self.exists() and bool(self.read_state())
        except RunStateError:
            return False

    def read_state(self) -> dict:
        """run.json as a checked mapping; RunStateError when it is not a readable tfvision one."""
        try:
            if self.state.is_symlink():
                raise RunStateError(f"{self.state} is a symbolic link")
            if self.state.stat().st_size > _MAX_STATE_BYTES:
                raise RunStateError(f"{self.state} is too large to be tfvision's")
            state = json.loads(self.state.read_text())
        except (OSError, ValueError) as e:
            raise RunStateError(f"{self.state} is unreadable ({type(e).__name__})") from None
        if not isinstance(state, dict) or not isinstance(state.get("tfvision"), str):
            raise RunStateError(f"{self.state} was not written by tfvision")
        for key, types in _STATE_TYPES.items():
            value = state.get(key)
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                raise RunStateError(f"{self.state}: {key} has the wrong type")
        return state

    def update_state(self, **values: Any) -> None:
        state = self.read_state() if self.exists() else {}
        write_json(self.state, {**state, **values})

    def read_metrics(self) -> dict:
        try:
            metrics = json.loads(self.metrics.read_text())
        except (OSError, ValueError):
            return {}
        return metrics if isinstance(metrics, dict) else {}

    def check_no_links(self) -> None:
        """Refuse a run whose files are symbolic links: appending to history.csv or replacing
        model.keras must never write outside the run directory."""
        for p in (
            self.config,
            self.model,
            self.metrics,
            self.history,
            self.classes,
            self.state,
            self.backup,
            self.logs,
            self.lock_file,
        ):
            if p.is_symlink():
                raise UsageError(
                    f"{p} is a symbolic link; tfvision writes only inside its run directory"
                )

    @contextlib.contextmanager
    def lock(self):
        """Hold run.lock for the whole block: a second process on this run fails at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.check_no_links()
        with open(self.lock_file, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                f.seek(0)
                holder = f.read(32).strip()
                raise TfvisionError(
                    f"{self.path} is in use by another tfvision process"
                    + (f" (pid {holder})" if holder.isdigit() else ""),
                    hint="wait for it to finish, or train into another --run-dir",
                ) from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def new_run_dir(dataset: str, model: str, root: Path | None = None) -> RunDir:
    root = Path(root or runs_root())
    slug = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(dataset).name if os.sep in dataset else dataset)
    slug = slug.strip("_") or "data"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{slug}-{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{slug}-{model}-{stamp}-{n}"
    return RunDir(path)


def list_runs(root: Path | None = None) -> list[tuple[RunDir, dict | None]]:
    """(run, state) under root, newest first; state is None for a run whose run.json is
    unreadable (listed, never fatal: one damaged run does not hide the others)."""
    root = Path(root or runs_root())
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        run = RunDir(p)
        if p.is_dir() and run.exists():
            try:
                found.append((run, run.read_state()))
            except RunStateError:
                found.append((run, None))
    return sorted(found, key=lambda rs: (rs[1] or {}).get("created", 0), reverse=True)


def resolve_run(spec: str | os.PathLike) -> RunDir:
    """A run directory from a run's name in the runs root (as `runs list` shows it), a path, or
    `latest` (the newest readable run under the runs root)."""
    if str(spec) == "latest":
        readable = [run for run, state in list_runs() if state is not None]
        if not readable:
            raise UsageError(
                f"no runs in {runs_root()} yet",
                hint="train one with `tfvision train`, or give a run directory",
            )
        return readable[0]
    # a plain name is the run of that name in the runs root first, wherever the command runs
    # (a folder of the same name here is ./NAME)
    named = by_name(str(spec))
    run = named if named is not None else RunDir(Path(spec))
    if not run.path.is_dir():
        raise UsageError(
            f"{spec} does not exist.{close_run_names(str(spec))}",
            hint="`tfvision runs list` shows the runs",
        )
    if not run.exists():
        raise UsageError(f"{spec} is not a tfvision run directory (it has no run.json)")
    run.read_state()
    return run


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")


def by_name(name: str) -> RunDir | None:
    """The run called name in the runs root, if name is a plain name and such a run exists."""
    if not RUN_NAME.match(name):
        return None
    run = RunDir(runs_root() / name)
    return run if run.path.is_dir() and run.exists() else None


def close_run_names(name: str) -> str:
    """' Did you mean: fashion?' for the runs in the runs root whose names are close, or ''."""
    from tfvision_cli.errors import did_you_mean

    if not RUN_NAME.match(name):
        return ""
    return did_you_mean(name, [run.path.name for run, _ in list_runs()])


def check_name(name: str) -> str:
    if not RUN_NAME.match(name):
        raise UsageError(
            f"bad run name {name!r}",
            hint="letters, digits and . _ + - (at most 100, starting with a letter or digit)",
        )
    return name


def epochs_done(run: RunDir) -> int:
    """Epochs in the run's history.csv (its data rows)."""
    try:
        with open(run.history, "rb") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except OSError:
        return 0


# What tfvision writes in a run directory, by kind: files of training, pictures (PNGs carrying
# tfvision's tag), and folders whose every entry is checked in turn.
_RUN_FILES = frozenset(
    {
        "config.yaml",
        "model.keras",
        "metrics.json",
        "history.csv",
        "classes.json",
        "calibration.json",
        "run.json",
        "run.lock",
    }
)
_RUN_PICTURES = frozenset(
    {
        "confusion_matrix.png",
        "confident_mistakes.png",
        "training_curves.png",
        "robustness.png",
        "reliability_diagram.png",
        "risk_coverage.png",
    }
)
_BACKUP_FILES = frozenset({"latest.weights.h5", "training_metadata.json"})


def foreign_entries(run: RunDir) -> list[str]:
    """Paths in the run directory (relative to it) that tfvision cannot prove it wrote: any
    name it does not write, a picture without its tag, a link, a user's file inside backup/,
    logs/ or exports/, a look-alike of its temporaries."""
    from tfvision_cli.files import is_own_temporary, is_tfvision_png

    foreign = []
    for p in sorted(run.path.iterdir()):
        if p.is_symlink():
            foreign.append(p.name)
        elif p.name in _RUN_FILES:
            foreign += [] if p.is_file() else [p.name]
        elif p.name in _RUN_PICTURES:
            foreign += [] if is_tfvision_png(p) else [p.name]
        elif p.name in ("backup", "logs", "exports") and p.is_dir():
            foreign += [f"{p.name}/{name}" for name in _foreign_inside(p)]
        elif not is_own_temporary(p, _RUN_FILES | _RUN_PICTURES):
            foreign.append(p.name)
    return foreign


def _foreign_inside(folder: Path) -> list[str]:
    from tfvision_cli.files import export_folder_is_ours, is_own_temporary

    foreign = []
    for p in sorted(folder.iterdir()):  # backup/, logs/ or exports/
        if folder.name == "backup":
            ours = p.is_file() and not p.is_symlink() and p.name in _BACKUP_FILES
            ours = ours or is_own_temporary(p, _BACKUP_FILES)
        elif folder.name == "logs":  # TensorBoard: a folder of event files per split, and
            ours = _event_folder(p) or _event_file(p)  # the HParams' own beside them
        else:  # exports: tfvision's export folders, each holding only what it recorded
            ours = export_folder_is_ours(p) or _own_export_temporary(p)
        if not ours:
            foreign.append(p.name)
    return foreign


def _event_folder(p: Path) -> bool:
    if p.is_symlink() or not p.is_dir():
        return False
    return all(_event_file(f) for f in p.iterdir())


def _event_file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink() and p.name.startswith("events.out.tfevents.")


def _own_export_temporary(p: Path) -> bool:
    """A temporary export folder a killed export left (its marker holds its token)."""
    from tfvision_cli.files import is_own_temporary

    name = p.name.split(".tfvision-tmp-")[0].lstrip(".")
    return p.is_dir() and is_own_temporary(p, {name})


def remove_run(run: RunDir) -> None:
    """Delete a run: only a readable tfvision run, not in use, holding nothing but tfvision's
    files (a user's file put there keeps the whole run, and says so)."""
    import shutil

    if run.path.is_symlink():
        raise UsageError(
            f"{run.path} is a symbolic link; give the run's own folder (nothing was deleted)"
        )
    run.read_state()
    others = foreign_entries(run)
    if others:
        raise TfvisionError(
            f"{run.path} holds files tfvision did not write ({first_few(others, 5)}); not deleted",
            hint="move them out first",
        )
    with run.lock():  # fails at once while training or tune uses it
        for p in sorted(run.path.iterdir()):
            if p.name == run.lock_file.name:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    run.lock_file.unlink(missing_ok=True)
    run.path.rmdir()
