"""`tfvision tune`: hyperparameter search with Optuna as the engine.

    study-dir/
        tune.yaml       the study: dataset, fixed options, space, sampler, pruner, trials
        study.journal   Optuna's file storage (several processes on one machine share it)
        trials/0003/    each trial an ordinary run directory
        trials.csv      the leaderboard
        best.yaml       the best trial's complete config: `tfvision train --config best.yaml`
        *.png           optimisation history, parameter importances

The objective is the best validation accuracy of a trial (never the test split). Trials run
one after another in one process, with Keras's state cleared between them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import gc
import io
import itertools
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfvision_cli import config as config_lib
from tfvision_cli.errors import TfvisionError, UsageError, did_you_mean
from tfvision_cli.files import create_text, process_alive, write_json, write_text_atomic
from tfvision_cli.training.study_storage import (
    check_joined,
    check_storage,
    open_storage,
    without_password,
)

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
METRICS = ("val_accuracy",)
STUDY_FILE = "tune.yaml"


@dataclass
class Dimension:
    name: str  # a TrainConfig field, or model_options.NAME
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False


@dataclass
class Study:
    """Everything a study needs to run or resume: what tune.yaml holds."""

    dataset: str
    space: list[Dimension]
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    pruner: str = "none"
    metric: str = "val_accuracy"
    trials: int = 20
    seed: int = 0
    storage: str | None = None
    name: str = "tfvision"  # the Optuna study's name in its storage (--study-name)


def parse_space(raw: Any, where: str = "the space") -> list[Dimension]:
    """space.yaml's mapping -> dimensions, checked against TrainConfig (no TensorFlow)."""
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{where} must map option names to choices or ranges")
    fields = {f.name: f for f in dataclasses.fields(config_lib.TrainConfig)}
    problems, dims = [], []
    for name, spec in raw.items():
        name = str(name)
        key = name.split(".", 1)
        if key[0] == "model_options" and len(key) == 2 and key[1]:
            kind = None
        elif name in fields and name not in ("dataset", "model_options"):
            kind = config_lib.base_type(fields[name])
        else:
            choices = [n for n in fields if n not in ("dataset", "model_options")]
            problems.append(f"unknown option {name!r} in {where}.{did_you_mean(name, choices)}")
            continue
        dim, problem = _dimension(name, spec, kind, fields.get(name))
        if problem:
            problems.append(f"{name}: {problem}")
        else:
            dims.append(dim)
    if problems:
        raise UsageError("; ".join(problems))
    return dims


def _dimension(name: str, spec: Any, kind, f) -> tuple[Dimension | None, str | None]:
    if isinstance(spec, list):
        if not spec:
            return None, "an empty list of choices"
        if f is not None:
            bad = [p for v in spec if (p := config_lib._check(f, v))]
            if bad:
                return None, bad[0]
        return Dimension(name, choices=list(spec)), None
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
        return None, "give a list of choices or {low: .., high: .., log: .., step: ..}"
    extra = set(spec) - {"low", "high", "log", "step"}
    if extra:
        return None, f"unknown range key {sorted(extra)[0]!r} (low, high, log, step)"
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        return None, "low and high must be numbers"
    if low > high:
        return None, f"low {low} is above high {high}"
    integer = kind is int or (kind is None and isinstance(low, int) and isinstance(high, int))
    if kind not in (int, float, None):
        return None, "a range needs a numeric option; give a list of choices"
    log = bool(spec.get("log", False))
    if log and low <= 0:
        return None, "a log range needs low > 0"
    return Dimension(
        name, low=low, high=high, log=log, step=spec.get("step"), integer=integer
    ), None


def grid_of(space: list[Dimension]) -> dict[str, list]:
    ranges = [d.name for d in space if d.choices is None]
    if ranges:
        raise UsageError(
            f"--sampler grid needs lists of choices; {', '.join(ranges)} "
            f"{'is a range' if len(ranges) == 1 else 'are ranges'}"
        )
    return {d.name: d.choices for d in space}


def suggest(trial, space: list[Dimension]) -> dict[str, Any]:
    params = {}
    for d in space:
        if d.choices is not None:
            params[d.name] = trial.suggest_categorical(d.name, d.choices)
        elif d.integer:
            step = int(d.step or 1)
            params[d.name] = trial.suggest_int(
                d.name, int(d.low), int(d.high), step=step, log=d.log
            )
        else:
            params[d.name] = trial.suggest_float(d.name, d.low, d.high, step=d.step, log=d.log)
    return params


def trial_config(study: Study, params: dict[str, Any]) -> config_lib.TrainConfig:
    """The complete training config of a trial: fixed options, then the trial's values."""
    values = dict(study.fixed)
    options = dict(values.get("model_options") or {})
    for name, value in params.items():
        if name.startswith("model_options."):
            options[name.split(".", 1)[1]] = value
        else:
            values[name] = value
    values["model_options"] = options
    values["dataset"] = study.dataset
    return config_lib.resolve(None, values, None)


# -- the study folder ----------------------------------------------------------------------


def _study_raw(study: Study) -> dict:
    raw = dataclasses.asdict(study)
    raw["space"] = {d.name: _dimension_yaml(d) for d in study.space}
    raw["storage"] = without_password(study.storage)  # never written to disk
    return raw


def create_study_file(study_dir: Path, study: Study) -> bool:
    """Write the study file unless one is there: False when another process was first."""
    return create_text(study_dir / STUDY_FILE, _yaml(_study_raw(study)))


def load_study(study_dir: Path) -> Study:
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise UsageError(
            f"{study_dir} holds no study ({STUDY_FILE})", hint="start one with --space"
        )
    raw = config_lib.load_yaml(path.read_text(), str(path))
    if not isinstance(raw, dict):
        raise UsageError(f"{path} is not a tfvision study (not a mapping)")
    try:
        raw["space"] = parse_space(raw["space"], str(path))
        study = Study(**raw)
    except (KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a tfvision study ({e})") from None
    problems = study_problems(study)
    if problems:
        raise UsageError(f"{path}: {'; '.join(problems)}")
    return study


def study_problems(study: Study) -> list[str]:
    """What is wrong with a study's values (a tune.yaml is a file anyone can edit)."""
    problems = []
    for name, value, allowed in (
        ("sampler", study.sampler, SAMPLERS),
        ("pruner", study.pruner, PRUNERS),
        ("metric", study.metric, METRICS),
    ):
        if value not in allowed:
            close = did_you_mean(str(value), allowed)
            problems.append(f"{name} {value!r} is not one of {', '.join(allowed)}.{close}")
    for name, value in (("trials", study.trials), ("seed", study.seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{name} must be a whole number >= 0, not {value!r}")
    if isinstance(study.trials, int) and not 1 <= study.trials <= 100_000:
        problems.append(f"trials must be in [1, 100000], not {study.trials}")
    if not isinstance(study.dataset, str) or not study.dataset:
        problems.append("dataset must be a name or a folder")
    if not isinstance(study.fixed, dict):
        problems.append("fixed must map training options to values")
    else:
        try:
            config_lib.check_keys(study.fixed, "fixed")
        except UsageError as e:
            problems.append(str(e))
    if study.storage is not None and not isinstance(study.storage, str):
        problems.append("storage must be a URL")
    try:
        check_name(str(study.name))
    except UsageError as e:
        problems.append(str(e))
    return problems


def _dimension_yaml(d: Dimension) -> Any:
    if d.choices is not None:
        return d.choices
    out = {"low": d.low, "high": d.high}
    if d.log:
        out["log"] = True
    if d.step is not None:
        out["step"] = d.step
    return out


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False)


# -- running -------------------------------------------------------------------------------


def open_study(study_dir: Path, study: Study):
    """The Optuna study in its storage (the study folder's journal file unless --storage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported by tfvision
    if study.storage:
        storage = open_storage(study.storage)
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(Path(study_dir) / "study.journal")))
    if study.sampler == "grid":
        sampler = optuna.samplers.GridSampler(grid_of(study.space), seed=study.seed)
    elif study.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=study.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=study.seed)
    pruner = {
        "none": optuna.pruners.NopPruner(),
        "median": optuna.pruners.MedianPruner(n_warmup_steps=1),
        "hyperband": optuna.pruners.HyperbandPruner(),
    }[study.pruner]
    opened = optuna.create_study(
        study_name=study.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    check_joined(opened, study.name, identity(study))
    return opened


def identity(study: Study) -> dict:
    """What makes two workers' studies one experiment (kept in the storage, checked on join)."""
    return {
        "dataset": study.dataset,
        "model": study.fixed.get("model", "auto"),
        "metric": study.metric,
        "sampler": study.sampler,
        "space": {d.name: _dimension_yaml(d) for d in study.space},
    }


def recover(optuna_study) -> list[int]:
    """Trials a killed process of this machine left RUNNING: marked failed and their parameters
    queued again, so they are retried once and never counted twice. Returns their numbers."""
    from optuna.trial import TrialState

    here = socket.gethostname()
    recovered = []
    for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if (
            t.user_attrs.get("host") != here
            or pid is None
            or int(pid) == os.getpid()
            or process_alive(int(pid))
        ):
            continue
        optuna_study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        if t.params and not t.user_attrs.get("retry_of"):
            optuna_study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        recovered.append(t.number)
    return recovered


# Trials that count towards --trials, across every process: finished, or running somewhere now,
# or queued to be retried.
_COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")


def run_study(
    study_dir: Path,
    study: Study,
    on_event: Callable[..., None] | None = None,
    timeout: float | None = None,
) -> dict:
    """Run trials until the study holds study.trials of them (finished or running, across
    every process that shares the storage): workers started together never exceed the total,
    and each trial draws its parameters from its own seed (study seed + trial number).

    on_event(kind, **data): "trial_start" (number, params, total), the trial's training
    events (epoch_begin, batch, epoch_end: as `train`), "trial_end" (row, done, total, best,
    elapsed, left: seconds, left None until a trial has finished here)."""
    import time

    from tfvision_cli.training.tracking import end_study_run, study_run

    optuna_study = open_study(study_dir, study)
    recover(optuna_study)
    parent = study_run(
        optuna_study, study_dir, study.fixed.get("track", "auto"), _study_settings(study)
    )
    emit = on_event or (lambda kind, **data: None)
    start, failed, ran = time.monotonic(), 0, 0
    while failed < study.trials and _counted(optuna_study) < study.trials:
        if timeout is not None and time.monotonic() - start > timeout:
            break
        seen: dict = {"study_dir": study_dir, "study": study, "parent": parent, "emit": emit}
        # one trial at a time through optimize (a sampler may stop the study from inside it:
        # GridSampler does when its grid is done)
        optuna_study.optimize(
            functools.partial(_one_trial, seen=seen),
            n_trials=1,
            catch=(TfvisionError, _Surplus),
        )
        if seen.get("surplus") or "number" not in seen:
            break
        row = _row(optuna_study.get_trials(deepcopy=False)[seen["number"]])
        failed += row["state"] == "fail"
        ran += 1
        emit("trial_end", row=row, **_progress(optuna_study, study, time.monotonic() - start, ran))
    report = summarize(study_dir, optuna_study)
    end_study_run(parent, report)
    return report


def _progress(optuna_study, study: Study, elapsed: float, ran: int) -> dict:
    """Where the study stands after a trial: trials finished (every worker's), the best so
    far, time spent here and an estimate of what is left (this process's pace)."""
    finished = ("COMPLETE", "PRUNED", "FAIL")
    done = sum(
        1
        for t in optuna_study.get_trials(deepcopy=False, states=tuple(map(_state, finished)))
        if not t.user_attrs.get("surplus")
    )
    complete = optuna_study.get_trials(deepcopy=False, states=(_state("COMPLETE"),))
    best = None
    if complete:
        b = max(complete, key=lambda t: t.value)
        best = {"number": b.number, "value": b.value}
    left = max(study.trials - done, 0) * elapsed / ran if ran else None
    return {"done": done, "total": study.trials, "best": best, "elapsed": elapsed, "left": left}


def _study_settings(study: Study) -> dict:
    """A study's settings as MLflow params of its parent run."""
    return {
        "dataset": study.dataset,
        "sampler": study.sampler,
        "pruner": study.pruner,
        "metric": study.metric,
        "trials": study.trials,
        "seed": study.seed,
        "space": ", ".join(d.name for d in study.space),
    }


class _Surplus(Exception):
    """Another worker took the study's last place between our count and our trial."""


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


def _counted(optuna_study, before: int | None = None) -> int:
    """Trials that count towards the total (of those numbered below `before`, if given)."""
    states = tuple(_state(n) for n in _COUNTED)
    trials = optuna_study.get_trials(deepcopy=False, states=states)
    return sum(1 for t in trials if before is None or t.number < before)


def _one_trial(trial, seen: dict) -> float:
    """One Optuna trial; `seen` carries the study's context in and what happened out."""
    study = seen["study"]
    seen["number"] = trial.number
    # who runs it, first: recover() tells a dead worker's trial by these
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    if _counted(trial.study, before=trial.number) >= study.trials:
        seen["surplus"] = True
        trial.set_user_attr("surplus", True)
        raise _Surplus
    seed_sampler(trial.study.sampler, study.seed + trial.number)
    try:
        return _objective(trial, seen["study_dir"], study, seen["parent"], seen["emit"])
    except TfvisionError as e:
        trial.set_user_attr("error", str(e))
        raise


def seed_sampler(sampler, seed: int) -> None:
    """Reseed an Optuna sampler for one trial. Optuna's samplers draw from one random state per
    process (their reseed_rng() draws an unseeded one): two workers seeded alike propose the
    same points. Seeded per trial, every worker proposes its own and a study is reproducible.
    RandomSampler, TPESampler and GridSampler keep that state in `_rng` (Optuna 4.2-5.x), as
    their own reseed_rng() uses it; a sampler without one is left as it is."""
    for part in (sampler, getattr(sampler, "_random_sampler", None)):
        rng = getattr(getattr(part, "_rng", None), "rng", None)
        if rng is not None:
            rng.seed(seed % 2**32)


def _objective(trial, study_dir: Path, study: Study, parent: str | None, emit) -> float:
    import optuna

    from tfvision_cli.tf_import import tf

    tf()  # quietly, before Keras imports it
    import keras

    from tfvision_cli.compat.tf_custom_gradients import released
    from tfvision_cli.training.callbacks import TrialPruning
    from tfvision_cli.training.session import Hooks, train

    run_dir = Path(study_dir) / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    params = suggest(trial, study.space)
    config = trial_config(study, params)
    emit("trial_start", number=trial.number, params=params, total=study.trials)
    pruning = TrialPruning(trial, study.metric)
    try:
        with released():  # the trial's graphs, which TensorFlow's gradient registry would keep
            result = train(
                config,
                run_dir=run_dir,
                on_event=emit,
                hooks=Hooks(
                    [pruning], kind="tune trial", parent=str(study_dir), tracking_parent=parent
                ),
            )
    finally:
        keras.backend.clear_session()  # memory stays flat across trials
        gc.collect()
        _trim_heap()
    if pruning.pruned:
        raise optuna.TrialPruned()
    value = result.metrics.get(study.metric)
    if value is None:
        raise TfvisionError(f"trial {trial.number} reported no {study.metric}")
    trial.set_user_attr("test_accuracy", result.metrics.get("test_accuracy"))
    return float(value)


def _trim_heap() -> None:
    """Hand the memory the trial freed back to the system (glibc keeps it otherwise)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


# -- results -------------------------------------------------------------------------------


def _row(t) -> dict:
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "params": dict(t.params),
        "value": t.value,
        "run_dir": t.user_attrs.get("run_dir"),
        "host": t.user_attrs.get("host"),
    }


def summarize(study_dir: Path, optuna_study) -> dict:
    """trials.csv, best.yaml and the pictures; returns the --json report."""
    from optuna.trial import TrialState

    trials = [
        _row(t)
        for t in optuna_study.get_trials(deepcopy=False)
        if not t.user_attrs.get("surplus")  # a worker's place taken by another: never ran
    ]
    complete = [
        t for t in optuna_study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE
    ]
    best = None
    if complete:
        b = max(complete, key=lambda t: t.value)
        best = {**_row(b), "test_accuracy": b.user_attrs.get("test_accuracy")}
        run_config = Path(b.user_attrs["run_dir"]) / "config.yaml"
        if run_config.is_file():
            write_text_atomic(Path(study_dir) / "best.yaml", run_config.read_text())
    _leaderboard(Path(study_dir) / "trials.csv", trials)
    few = few_trials(len(complete))
    pictures = _plots(Path(study_dir), optuna_study, few) if len(complete) >= 2 else []
    report = {"study_dir": str(study_dir), "trials": trials, "best": best, "plots": pictures}
    if few:
        report["few_trials"] = few
    write_json(Path(study_dir) / "summary.json", report)
    return report


def _leaderboard(path: Path, trials: list[dict]) -> None:
    names = sorted({k for t in trials for k in t["params"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "value", *names, "run_dir", "host"])
    ranked = sorted(trials, key=lambda t: (t["value"] is None, -(t["value"] or 0)))
    for t in ranked:
        writer.writerow(
            [
                t["number"],
                t["state"],
                t["value"],
                *(t["params"].get(n) for n in names),
                t["run_dir"],
                t["host"],
            ]
        )
    write_text_atomic(path, out.getvalue())


# Below this many complete trials, parameter importances (fANOVA over the trials) are mostly
# noise: said on the picture and in the output.
IMPORTANCE_TRIALS = 10


def few_trials(complete: int) -> str | None:
    if complete >= IMPORTANCE_TRIALS:
        return None
    return (
        f"only {complete} complete trials: parameter importances from fewer than "
        f"{IMPORTANCE_TRIALS} are mostly noise"
    )


def _plots(study_dir: Path, optuna_study, few: str | None) -> list[str]:
    """Optuna's own matplotlib plots; a plot Optuna cannot draw (too few trials) is skipped;
    the importances say on the picture when they rest on few trials."""
    import warnings

    from optuna.visualization import matplotlib as ovm

    from tfvision_cli.plots import save_figure

    written = []
    for name, draw in (
        ("optimization_history.png", ovm.plot_optimization_history),
        ("param_importances.png", ovm.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(optuna_study)
            if few and name == "param_importances.png":
                ax.figure.text(0.5, 0.005, few, ha="center", va="bottom", color="firebrick")
            written.append(str(save_figure(ax.figure, study_dir / name)))
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return written


def grid_size(space: list[Dimension]) -> int:
    return len(list(itertools.product(*(d.choices for d in space))))


def resumed_study(study_dir: Path | None, trials: int | None, storage: str | None) -> Study:
    """The study in --study-dir, continued (--trials raises its count; --storage gives the
    password the study file does not keep)."""
    if study_dir is None:
        raise UsageError("--resume needs --study-dir")
    study = load_study(study_dir)
    if trials:
        study.trials = trials
    if storage and without_password(storage) == study.storage:
        study.storage = storage  # the password, for this process only
    return study


def new_study(
    dataset: str | None,
    space_file: Path | None,
    fixed: dict,
    sampler: str,
    pruner: str,
    metric: str,
    trials: int | None,
    storage: str | None,
) -> Study:
    """A study from the command line, every name and value checked before TensorFlow."""
    if space_file is None or dataset is None:
        raise UsageError("give DATASET and --space (or --resume --study-dir DIR)")
    try:
        text = space_file.read_text()
    except OSError as e:
        raise UsageError(f"cannot read {space_file}: {e.strerror}") from None
    space = parse_space(config_lib.load_yaml(text, f"space file {space_file}"), str(space_file))
    if sampler == "grid":
        grid_of(space)
        trials = min(trials or grid_size(space), grid_size(space))
    study = Study(
        dataset=dataset,
        space=space,
        fixed=fixed,
        sampler=sampler,
        pruner=pruner,
        metric=metric,
        trials=trials or 20,
        seed=fixed.get("seed", 0),
        storage=storage,
    )
    _check_first_trial(study)
    if study.storage:
        check_storage(study.storage)
    return study


def _check_first_trial(study: Study) -> None:
    """The fixed options with the first choice (or the low end) of every dimension."""
    from tfvision_cli.training.session import check_config

    first = {d.name: d.choices[0] if d.choices else d.low for d in study.space}
    try:
        check_config(trial_config(study, first))
    except UsageError as e:
        raise UsageError(f"with the space's first values: {e}") from None


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}", name):
        raise UsageError(
            f"study name {name!r}: use letters, digits and _ . + - (at most 100, first a letter "
            "or digit)"
        )
    return name


def study_folder(study: Study, study_dir: Path | None, name: str | None = None) -> Path:
    """The study's folder (default saved_models/tune-DATASET-TIME), created, or joined when the
    same command started elsewhere at once created it; a folder that is not a tfvision study,
    or holds another study, is refused. The study is named `name`, else after its folder."""
    import re
    import time

    from tfvision_cli.files import is_temporary
    from tfvision_cli.runs import runs_root

    if study.storage and not name and study_dir is None:
        raise UsageError(
            "a study in a shared --storage needs a name that every machine gives: "
            "--study-name NAME (or --study-dir, whose folder name it takes)"
        )
    if study_dir is None:
        slug = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(study.dataset).name).strip("_") or "data"
        study_dir = runs_root() / f"tune-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    others = study_dir.exists() and any(not is_temporary(p.name) for p in study_dir.iterdir())
    if others and not (study_dir / STUDY_FILE).exists():
        raise UsageError(f"{study_dir} exists and is not a tfvision study; refusing to use it")
    study.name = check_name(name or Path(study_dir).name)
    # the same command started on other processes at once: one creates, the others join
    on_disk = dataclasses.replace(study, storage=without_password(study.storage))
    if not create_study_file(study_dir, study) and load_study(study_dir) != on_disk:
        raise UsageError(f"{study_dir} holds another study", hint="--resume continues it as it is")
    return study_dir
