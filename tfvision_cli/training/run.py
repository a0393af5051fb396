"""The run directory's stages: which run, its lifecycle (lock, files, status), and where
a worker that is not the chief writes."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tfvision_cli import __version__, interrupts
from tfvision_cli.config import TrainConfig, to_yaml
from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import (
    remove_stale_temp_dirs,
    remove_stale_temp_files,
    temp_dir,
    write_json,
    write_text_atomic,
)
from tfvision_cli.runs import RunDir, new_run_dir

Emit = Callable[..., None]


class Diverged(TfvisionError):
    """The loss became NaN or infinite."""


class LostWorker(TfvisionError):
    """Another worker of a multi-worker cluster went away."""


def choose_run(config: TrainConfig, run_dir: Path | None, resume: bool) -> tuple[RunDir, bool]:
    """The run directory and whether it resumes one. Only a folder whose run.json tfvision
    wrote is a run; any other non-empty folder is refused, never written into."""
    if run_dir is None:
        if resume:
            raise UsageError("--resume needs a run: give --run-dir or use `latest`")
        return new_run_dir(config.dataset, config.model), False
    run = RunDir(run_dir)
    if run.path.is_symlink() or (run.path.exists() and not run.path.is_dir()):
        raise UsageError(f"--run-dir {run.path} is not a folder")
    if run.exists():
        run.read_state()  # a damaged run.json is an error, not a fresh start
        return run, True
    if run.path.exists() and {p.name for p in run.path.iterdir()} - {run.lock_file.name}:
        raise UsageError(
            f"{run.path} exists and is not a tfvision run directory (no run.json); "
            "refusing to write into it",
            hint="give a new or empty folder as --run-dir",
        )
    return run, False


@contextlib.contextmanager
def run_lifecycle(
    run: RunDir, resuming: bool, is_chief: bool, config: TrainConfig, info, shape
) -> Iterator[dict]:
    """The run directory from start to end: locked for the whole block, its files written,
    its status recorded (running, then completed / interrupted / diverged / failed).

    Yields the state of the run before this session (empty for a new run). Only the chief
    (is_chief=True) writes; the other workers of a cluster read the chief's files.
    """
    if not is_chief:
        yield run.read_state() if resuming else {}
        return
    with run.lock():
        if not resuming and run.exists():
            raise TfvisionError(f"another process started a run in {run.path} meanwhile")
        state = run.read_state() if resuming else {}
        for folder in (run.path, run.backup):  # what a killed session left half-written
            remove_stale_temp_files(folder)
        _forget_calibration(run)
        write_text_atomic(run.config, to_yaml(config))
        write_json(
            run.classes,
            {
                "class_names": info.class_names,
                "input_shape": list(shape),
                "dataset": config.dataset,
                "dataset_source": info.source,
            },
        )
        run.update_state(
            created=state.get("created", time.time()),
            status="running",
            dataset=config.dataset,
            model=config.model,
            tfvision=__version__,
        )
        try:
            yield state
        except (KeyboardInterrupt, LostWorker):
            run.update_state(status="interrupted")
            raise
        except Diverged:
            run.update_state(status="diverged")
            raise
        except BaseException as e:
            run.update_state(status="interrupted" if interrupts.caused(e) else "failed")
            raise
        run.update_state(status="completed")


@contextlib.contextmanager
def own_files(run: RunDir, is_chief: bool, worker: int) -> Iterator[RunDir]:
    """Where this process writes its backup, history and logs: the run itself for the chief;
    for another worker a marked scratch folder, removed when it finishes."""
    if is_chief:
        yield run
        return
    tmp, name = Path(tempfile.gettempdir()), f"tfvision-worker{worker}"
    remove_stale_temp_dirs(tmp, name)  # left by killed workers
    with temp_dir(tmp, name) as scratch:
        yield RunDir(scratch)


def _forget_calibration(run: RunDir) -> None:
    """Training on changes the model: a temperature fitted to the one before would be wrong.
    Removed only when it is tfvision's record (`tfvision calibrate` fits it again)."""
    import json

    if not run.calibration.is_file() or run.calibration.is_symlink():
        return
    try:
        record = json.loads(run.calibration.read_text())
    except (OSError, ValueError):
        return
    if (
        isinstance(record, dict)
        and record.get("method") == "temperature"
        and ("tfvision_version" in record)
    ):
        run.calibration.unlink()
