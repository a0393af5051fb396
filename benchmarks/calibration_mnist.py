"""Calibration on MNIST (issue 34): ECE before and after `tfvision calibrate`, and the coverage and
size of 80/90/95% prediction sets on the test split, for the default recipe and for a model made
over-confident on purpose (an MLP trained long without label smoothing).

    TFDS_DATA_DIR=... python benchmarks/calibration_mnist.py [--default RUN] [--out DIR]

Every number comes from the CLI's own --json output (train, calibrate, evaluate).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PY = sys.executable
RECIPES = {
    "default recipe (fastnet, label smoothing 0.1)": [],
    "over-confident MLP (20 epochs, no label smoothing)": [
        "--model",
        "mlp",
        "--epochs",
        "20",
        "--label-smoothing",
        "0",
        "--augment",
        "none",
    ],
}


def tfvision(*args: str) -> dict:
    out = subprocess.run(
        [PY, "-m", "tfvision_cli", *args, "--json"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--default", help="an existing default-recipe MNIST run to use")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="calibration-"))
    print(
        "| model | test accuracy | T | test ECE before | after | NLL before | after "
        "| 80% sets: coverage, size | 90% | 95% |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---|")
    for name, options in RECIPES.items():
        run = args.default if (args.default and not options) else None
        if run is None:
            run = str(out / ("default" if not options else "over-confident"))
            tfvision("train", "mnist", "--run-dir", run, *options)
        before = tfvision("evaluate", run, "--no-plots")["calibration"]
        record = tfvision("calibrate", run)
        cells = []
        for level in ("0.8", "0.9", "0.95"):
            r = tfvision("evaluate", run, "--no-plots", "--prediction-set", level)
            s = r["prediction_set"]
            cells.append(f"{s['coverage']:.4f}, {s['mean_size']:.3f}")
        after = r["calibration"]
        print(
            f"| {name} | {r['accuracy']:.4f} | {record['temperature']:.3f} | "
            f"{before['ece']:.4f} | {after['ece']:.4f} | {before['nll']:.4f} | "
            f"{after['nll']:.4f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
