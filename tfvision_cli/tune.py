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
import gc
import io
import itertools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfvision_cli import config as config_lib
from tfvision_cli.errors import TfvisionError, UsageError, did_you_mean
from tfvision_cli.files import create_text, process_alive, write_json, write_text_atomic

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
    try:
        raw["space"] = parse_space(raw["space"], str(path))
        return Study(**raw)
    except (KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a tfvision study ({e})") from None


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

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if study.storage:
        storage = study.storage
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
    return optuna.create_study(
        study_name="tfvision",
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


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


def run_study(
    study_dir: Path, study: Study, on_trial: Callable[[dict], None] | None = None,
    timeout: float | None = None,
) -> dict:  # fmt: skip
    """Run trials until the study holds study.trials finished ones (across every process)."""
    import optuna
    from optuna.trial import TrialState

    optuna_study = open_study(study_dir, study)
    recover(optuna_study)
    # the total counts finished trials; a failed one (a killed process, an error) is not one
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    total = optuna.study.MaxTrialsCallback(study.trials, states=done)

    def after(s, t) -> None:
        if on_trial:
            on_trial(_row(t))
        if len(s.get_trials(deepcopy=False, states=(TrialState.FAIL,))) >= study.trials:
            s.stop()  # every trial failing: stop rather than retry for ever

    if len(optuna_study.get_trials(deepcopy=False, states=done)) < study.trials:
        optuna_study.optimize(
            lambda trial: _objective(trial, study_dir, study),
            timeout=timeout,
            callbacks=[total, after],
            catch=(TfvisionError,),
            gc_after_trial=True,
        )
    return summarize(study_dir, optuna_study)


def _objective(trial, study_dir: Path, study: Study) -> float:
    import optuna

    from tfvision_cli.tf_import import tf

    tf()  # quietly, before Keras imports it
    import keras

    from tfvision_cli.callbacks import TrialPruning
    from tfvision_cli.compat.tf_custom_gradients import released
    from tfvision_cli.train import train

    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    run_dir = Path(study_dir) / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("run_dir", str(run_dir))
    config = trial_config(study, suggest(trial, study.space))
    pruning = TrialPruning(trial, study.metric)
    try:
        with released():  # the trial's graphs, which TensorFlow's gradient registry would keep
            result = train(config, run_dir=run_dir, extra_callbacks=[pruning])
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
    }


def summarize(study_dir: Path, optuna_study) -> dict:
    """trials.csv, best.yaml and the pictures; returns the --json report."""
    from optuna.trial import TrialState

    trials = [_row(t) for t in optuna_study.get_trials(deepcopy=False)]
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
    pictures = _plots(Path(study_dir), optuna_study) if len(complete) >= 2 else []
    report = {"study_dir": str(study_dir), "trials": trials, "best": best, "plots": pictures}
    write_json(Path(study_dir) / "summary.json", report)
    return report


def _leaderboard(path: Path, trials: list[dict]) -> None:
    names = sorted({k for t in trials for k in t["params"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "value", *names, "run_dir"])
    ranked = sorted(trials, key=lambda t: (t["value"] is None, -(t["value"] or 0)))
    for t in ranked:
        writer.writerow([t["number"], t["state"], t["value"],
                         *(t["params"].get(n) for n in names), t["run_dir"]])  # fmt: skip
    write_text_atomic(path, out.getvalue())


def _plots(study_dir: Path, optuna_study) -> list[str]:
    """Optuna's own matplotlib plots; a plot Optuna cannot draw (too few trials) is skipped."""
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
            written.append(str(save_figure(ax.figure, study_dir / name)))
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
    return written


def grid_size(space: list[Dimension]) -> int:
    return len(list(itertools.product(*(d.choices for d in space))))
