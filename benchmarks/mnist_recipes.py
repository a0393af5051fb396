"""Side-by-side MNIST benchmark: the published Keras example against tfvision's recipes.

    TFDS_DATA_DIR=... python benchmarks/mnist_recipes.py --seeds 0 1 2 [--write] [--log runs.log]

Runs each recipe as a whole command (TensorFlow import, data, model build, training, test
evaluation), alternating recipes within each seed so that machine drift hits all alike, and
reports medians over seeds of test accuracy, wall time, training images/s and peak RSS, with the
ratios to the reference. --write stores the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from timing import timed

HERE = Path(__file__).resolve().parent
NOTES_MARKER = "<!-- notes: kept as they are by --write -->"
PY = sys.executable

TFVISION = [PY, "-m", "tfvision_cli", "train", "mnist"]
REFERENCE_SETTINGS = (
    "--model cnn --optimizer adam --batch-size 128 --epochs 15 --validation-split 0.1 "
    "--schedule constant --learning-rate 0.001 --warmup-epochs 0 --label-smoothing 0"
)
# name -> the command without seed and run directory
RECIPES = {
    "reference (Keras example)": [PY, str(HERE / "reference_keras_mnist.py")],
    "tfvision train mnist": TFVISION,
    "tfvision --preset fast": [*TFVISION, "--preset", "fast"],
    "tfvision, reference settings": [*TFVISION, *REFERENCE_SETTINGS.split()],
    "tfvision --model mlp --epochs 10": [*TFVISION, "--model", "mlp", "--epochs", "10"],
}


def command(name: str, seed: int, run_dir: str) -> list[str]:
    if name.startswith("reference"):
        return [*RECIPES[name], str(seed)]
    return [*RECIPES[name], "--seed", str(seed), "--run-dir", run_dir, "--json"]


def run(cmd: list[str]) -> dict:
    """Wall time and peak RSS of the whole command (GNU time), and what it printed."""
    wall, rss_gb, stdout = timed(cmd)
    out = json.loads(stdout.strip().splitlines()[-1])
    m = out.get("metrics", out)
    return {
        "test_accuracy": m["test_accuracy"],
        "wall_seconds": wall,
        "train_images_per_second": m["train_images_per_second"],
        "peak_rss_gb": rss_gb,
        # TensorFlow imported -> first training step finished (issue 6, target 4)
        "seconds_to_first_step": m.get("seconds_to_first_step") or float("nan"),
    }


def _num(v: float) -> str:
    return "n/a" if v != v else f"{v:.1f}"


def compute_table(med: dict) -> list[str]:
    """FLOPs per image of the models and the GFLOP/s the runs achieved, next to the CPU's peak."""
    from tfvision_cli.config import PRESETS
    from tfvision_cli.models.registry import create_model
    from tfvision_cli.models.summary import flops_per_image

    mhz = max(
        float(line.split(":")[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("cpu MHz")
    )
    cores = os.cpu_count() or 1
    # AVX2 + FMA: two 8-wide fp32 FMA units per core, 32 FLOP per cycle
    peak = 32 * mhz / 1e3 * cores
    models = {
        "reference (Keras example)": ("cnn", {}),
        "tfvision, reference settings": ("cnn", {}),
        "tfvision train mnist": ("fastnet", {}),
        "tfvision --preset fast": (
            PRESETS["fast"].get("model", "fastnet"),
            PRESETS["fast"].get("model_options", {}),
        ),
        "tfvision --model mlp --epochs 10": ("mlp", {}),
    }
    lines = [
        "",
        f"Compute: forward FLOPs per image by TensorFlow's profiler; training counted as 3x the "
        f"forward pass. 2-core fp32 peak: 32 FLOP/cycle/core (AVX2 FMA) x {mhz / 1e3:.2f} GHz x "
        f"{cores} cores = {peak:.0f} GFLOP/s.",
        "",
        "| recipe | model | forward MFLOP/image | achieved GFLOP/s | share of peak |",
        "|---|---|---|---|---|",
    ]
    for name, m in med.items():
        model, options = models[name]
        flops = flops_per_image(create_model(model, (28, 28, 1), 10, **options))
        achieved = 3 * flops * m["train_images_per_second"] / 1e9
        lines.append(
            f"| {name} | {model} {options or ''} | {flops / 1e6:.2f} | {achieved:.1f} | "
            f"{achieved / peak:.0%} |"
        )
    return lines


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import importlib.metadata as md

    versions = ", ".join(
        f"{p} {md.version(p)}" for p in ("tensorflow", "keras", "tensorflow-datasets", "numpy")
    )
    return (
        f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {versions}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--write", action="store_true", help="store the table in RESULTS.md")
    ap.add_argument(
        "--log",
        type=Path,
        help="a file of per-run results: runs found in it are not run again, new ones are "
        "appended (resumes a long benchmark)",
    )
    args = ap.parse_args()
    done = {}
    if args.log and args.log.is_file():
        for line in args.log.read_text().splitlines():
            m = re.match(r"^seed (\d+) (.+?): (\{.*\})$", line)
            if m:
                done[(int(m.group(1)), m.group(2))] = json.loads(m.group(3))
    results: dict[str, list[dict]] = {r: [] for r in args.recipes}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name in args.recipes:
                r = done.get((seed, name))
                if r is None:
                    r = run(command(name, seed, f"{tmp}/{seed}-{hash(name)}"))
                    line = f"seed {seed} {name}: {json.dumps(r)}"
                    if args.log:
                        with args.log.open("a") as f:
                            f.write(line + "\n")
                    print(line, file=sys.stderr, flush=True)
                results[name].append(r)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    ref = med.get("reference (Keras example)")
    lines = [
        f"Machine: {machine()}.",
        f"Medians over seeds {args.seeds}; whole-command wall "
        "time (TensorFlow import, data, build, training, test evaluation).",
        "",
        "| recipe | test accuracy | wall s | train images/s | peak RSS GB | first step s "
        "| wall vs ref | images/s vs ref |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in med.items():
        wall_ratio = f"{m['wall_seconds'] / ref['wall_seconds']:.2f}x" if ref else ""
        ips_ratio = (
            f"{m['train_images_per_second'] / ref['train_images_per_second']:.2f}x" if ref else ""
        )
        lines.append(
            f"| {name} | {m['test_accuracy']:.4f} | {m['wall_seconds']:.1f} | "
            f"{m['train_images_per_second']:,.0f} | {m['peak_rss_gb']:.2f} | "
            f"{_num(m['seconds_to_first_step'])} | {wall_ratio} | {ips_ratio} |"
        )
    lines += ["", "Per run:", ""] + [
        f"- {n}: "
        + "; ".join(f"acc {r['test_accuracy']:.4f}, {r['wall_seconds']:.1f} s" for r in rs)
        for n, rs in results.items()
    ]
    lines += compute_table(med)
    table = "\n".join(lines)
    print(table)
    if args.write:
        # what follows the marker (targets, analysis: written by people) is kept
        path = HERE / "RESULTS.md"
        old = path.read_text() if path.is_file() else ""
        notes = old[old.index(NOTES_MARKER) :] if NOTES_MARKER in old else NOTES_MARKER + "\n"
        path.write_text(
            "# MNIST recipes: latest results\n\nMade by "
            "`python benchmarks/mnist_recipes.py --write`.\n\n" + table + "\n\n" + notes
        )


if __name__ == "__main__":
    main()
