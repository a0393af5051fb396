"""Memory across the trials of one `tfvision tune` process: the resident set size after each
trial (Keras Tuner's users report it growing until OOM; tfvision clears Keras's state and
collects garbage between trials).

    python benchmarks/tune_memory.py --trials 20

Prints one JSON line per trial (number, RSS in MB) and a summary: the growth from the third
trial to the last (the first ones pay for TensorFlow's one-time allocations).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import psutil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    a = parser.parse_args()

    from tfvision_cli.tune import Study, parse_space, run_study

    process = psutil.Process()
    rss: list[float] = []

    def on_trial(row: dict) -> None:
        rss.append(process.memory_info().rss / 1e6)
        print(json.dumps({"trial": row["number"], "rss_mb": round(rss[-1], 1)}), flush=True)

    space = parse_space({"learning_rate": {"low": 0.001, "high": 0.03, "log": True}})
    study = Study("digits", space, {"model": "cnn", "epochs": 2}, "random", trials=a.trials)
    with tempfile.TemporaryDirectory() as tmp:
        study_dir = Path(tmp) / "study"
        study_dir.mkdir()
        run_study(study_dir, study, on_trial)
    base = rss[min(2, len(rss) - 1)]
    summary = {
        "trials": len(rss),
        "rss_mb_after_trial_3": round(base, 1),
        "rss_mb_last": round(rss[-1], 1),
        "growth_mb_per_trial": round((rss[-1] - base) / max(len(rss) - 3, 1), 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
