"""One measured search on MNIST: `tfvision tune` with TPE over the fast recipe's neighbourhood,
then the best trial's best.yaml trained again and compared with the default recipe.

    python benchmarks/tune_mnist.py --trials 12

Prints JSON lines: the study's summary (trials, best) and the retrain of best.yaml.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = """\
learning_rate: {low: 0.001, high: 0.01, log: true}
batch_size: [64, 128, 256]
label_smoothing: [0.0, 0.1]
model_options.width: [12, 16, 24]
"""


def tfvision(*args: str) -> tuple[float, dict]:
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", *args, "--json"], capture_output=True, text=True
    )
    if r.returncode:
        raise SystemExit(r.stderr)
    return time.perf_counter() - start, json.loads(r.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(SPACE)
        study = Path(tmp) / "study"
        args = ["tune", "mnist", "--space", str(space), "--trials", str(a.trials)]
        seconds, report = tfvision(*args, "--epochs", "2", "--study-dir", str(study))
        trials = [
            {k: t[k] for k in ("number", "state", "value", "params")} for t in report["trials"]
        ]
        summary = {"study_seconds": round(seconds, 1), "trials": trials, "best": report["best"]}
        print(json.dumps(summary), flush=True)
        again = str(Path(tmp) / "again")
        seconds, retrain = tfvision(
            "train", "--config", str(study / "best.yaml"), "--run-dir", again
        )
        m = retrain["metrics"]
        result = {
            "val_accuracy": m["val_accuracy"],
            "test_accuracy": m["test_accuracy"],
            "wall_seconds": round(seconds, 1),
        }
        print(json.dumps({"retrain_best_yaml": result}))


if __name__ == "__main__":
    main()
