"""The run directory: its layout, finding `latest`, and atomic writes.

saved_models/<dataset>-<model>-<YYYYmmdd-HHMMSS>/
    run.json        status, dataset, model, created
    config.yaml     the resolved configuration
    classes.json    class names and input shape
    model.keras     the best epoch by validation accuracy
    backup/         BackupAndRestore state (resume after an interruption)
    history.csv     one row per epoch
    metrics.json    test accuracy and loss, validation accuracy, epochs, timings
    logs/           TensorBoard
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from tfvision_cli.errors import UsageError


def runs_root() -> Path:
    return Path(os.environ.get("TFVISION_RUNS_DIR", "saved_models"))


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


_TEMP = re.compile(r"^\..+\.(?:tmp|old)-(\d+)(?:\..*)?$")


def remove_stale_temps(folder: Path, only: str | None = None) -> None:
    """Remove the temporary names (.<name>.tmp-<pid>...) that a killed tfvision process left
    in folder (or only the one named `only`); those of running processes are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in [folder / only] if only else folder.iterdir():
        m = _TEMP.match(p.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def replace_dir(new: Path, target: Path) -> None:
    """Move the folder new into place at target; an old target is removed only after the move."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    model = property(lambda self: self.path / "model.keras")
    metrics = property(lambda self: self.path / "metrics.json")
    history = property(lambda self: self.path / "history.csv")
    classes = property(lambda self: self.path / "classes.json")
    backup = property(lambda self: self.path / "backup")
    logs = property(lambda self: self.path / "logs")
    state = property(lambda self: self.path / "run.json")

    def exists(self) -> bool:
        return self.config.is_file()

    def read_state(self) -> dict:
        return read_json(self.state) if self.state.is_file() else {}

    def update_state(self, **values: Any) -> None:
        write_json(self.state, {**self.read_state(), **values})

    def read_metrics(self) -> dict:
        return read_json(self.metrics) if self.metrics.is_file() else {}


def new_run_dir(dataset: str, model: str, root: Path | None = None) -> RunDir:
    root = Path(root or runs_root())
    slug = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(dataset).name if os.sep in dataset else dataset)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{slug.strip('_') or 'data'}-{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{slug}-{model}-{stamp}-{n}"
    return RunDir(path)


def list_runs(root: Path | None = None) -> list[RunDir]:
    """Runs under root, newest first."""
    root = Path(root or runs_root())
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: r.read_state().get("created", 0), reverse=True)


def resolve_run(spec: str | os.PathLike) -> RunDir:
    """A run directory from a path or `latest` (the newest run under the runs root)."""
    if str(spec) == "latest":
        runs = list_runs()
        if not runs:
            raise UsageError(
                f"no runs in {runs_root()} yet",
                hint="train one with `tfvision train`, or give a run directory",
            )
        return runs[0]
    run = RunDir(Path(spec))
    if not run.path.is_dir():
        raise UsageError(f"{spec} does not exist")
    if not run.exists():
        raise UsageError(f"{spec} is not a tfvision run directory (it has no config.yaml)")
    return run
