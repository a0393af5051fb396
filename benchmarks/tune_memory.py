"""Memory across the trials of one `tfvision tune` process: the resident set size after each
trial (Keras Tuner's users report it growing until OOM). Between trials tfvision clears Keras's
state, drops the custom gradients TensorFlow's registry would keep with their graphs
(tfvision_cli/compat/tf_custom_gradients.py), collects garbage and trims the C heap.

    python benchmarks/tune_memory.py --trials 20

Prints one JSON line per trial (number, RSS in MB, live Python objects) and a summary: the
least-squares slope of RSS from the third trial on (the first ones pay for TensorFlow's one-time
allocations), its range, and the change in live objects.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
from pathlib import Path

import psutil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    a = parser.parse_args()

    from tfvision_cli.training.tune import Study, parse_space, run_study

    process = psutil.Process()
    rss: list[float] = []
    objects: list[int] = []

    def on_trial(row: dict) -> None:
        rss.append(process.memory_info().rss / 1e6)
        objects.append(len(gc.get_objects()))
        line = {"trial": row["number"], "rss_mb": round(rss[-1], 1), "objects": objects[-1]}
        print(json.dumps(line), flush=True)

    space = parse_space({"learning_rate": {"low": 0.001, "high": 0.03, "log": True}})
    study = Study("digits", space, {"model": "cnn", "epochs": 2}, "random", trials=a.trials)
    with tempfile.TemporaryDirectory() as tmp:
        study_dir = Path(tmp) / "study"
        study_dir.mkdir()
        run_study(study_dir, study, on_trial)
    import numpy as np

    tail = rss[2:] if len(rss) > 3 else rss
    slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) > 1 else 0.0
    summary = {
        "trials": len(rss),
        "rss_mb_from_trial_3": [round(min(tail), 1), round(max(tail), 1)],
        "growth_mb_per_trial": round(slope, 2),
        "objects_first_to_last": [objects[0], objects[-1]],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
