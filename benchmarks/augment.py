"""Which augmentations and penalties help: the default recipe with one change at a time.

    TFDS_DATA_DIR=... python benchmarks/augment.py --dataset mnist --seeds 0
    python benchmarks/augment.py --dataset digits --seeds 0 1 2

Each variant is `tfvision train DATASET` plus its flags (the default recipe otherwise, epochs
chosen from the data as usual); prints one JSON line per run (test accuracy, wall seconds) and
a summary per variant (mean over seeds, difference from the default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

VARIANTS = {
    "default": [],
    "randaugment": ["--augment", "randaugment"],
    "light": ["--augment", "light"],
    "mixup 0.2": ["--mixup", "0.2"],
    "cutmix 1.0": ["--cutmix", "1.0"],
    "random erasing 0.25": ["--random-erasing", "0.25"],
    "l2 1e-4": ["--l2", "1e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    a = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TFVISION_RUNS_DIR"] = tmp
        for seed in a.seeds:
            for name in a.variants:
                cmd = [
                    sys.executable,
                    "-m",
                    "tfvision_cli",
                    "train",
                    a.dataset,
                    *VARIANTS[name],
                    "--seed",
                    str(seed),
                    "--json",
                    "-q",
                ]
                start = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True, check=False)
                seconds = time.perf_counter() - start
                if r.returncode:
                    sys.exit(f"{name}: {r.stderr[-1500:]}")
                accuracy = json.loads(r.stdout)["metrics"]["test_accuracy"]
                results.setdefault(name, []).append(accuracy)
                print(
                    json.dumps(
                        {
                            "variant": name,
                            "seed": seed,
                            "test_accuracy": accuracy,
                            "seconds": round(seconds, 1),
                        }
                    ),
                    flush=True,
                )
    base = sum(results["default"]) / len(results["default"]) if "default" in results else None
    for name, values in results.items():
        mean = sum(values) / len(values)
        diff = None if base is None else round(mean - base, 4)
        print(
            json.dumps(
                {
                    "variant": name,
                    "mean_test_accuracy": round(mean, 4),
                    "vs_default": diff,
                    "seeds": len(values),
                }
            )
        )


if __name__ == "__main__":
    main()
