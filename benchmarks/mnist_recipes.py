"""Side-by-side MNIST benchmark: the published Keras example against tfvision's recipes.

    TFDS_DATA_DIR=... python benchmarks/mnist_recipes.py --seeds 0 1 [--write] [--log runs.log]

Runs each recipe as a whole command (TensorFlow import, data, model build, training, test
evaluation), alternating recipes within each seed so that machine drift hits all alike, and
reports means over seeds of test accuracy, wall time, training images/s, peak RSS and the
first step, with the ratio to the faster of the two references (the Keras example with oneDNN's
kernels off and on), the CPU's vector features, and where tfvision's time goes stage by stage.
--write stores the tables in benchmarks/RESULTS.md.
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
REFERENCE = [PY, str(HERE / "reference_keras_mnist.py")]
REFERENCE_SETTINGS = (
    "--model cnn --optimizer adam --batch-size 128 --epochs 15 --validation-split 0.1 "
    "--schedule constant --learning-rate 0.001 --warmup-epochs 0 --label-smoothing 0"
)
# name -> (the command without seed and run directory, the environment it runs in). The
# reference runs both ways: TensorFlow turns oneDNN's kernels on by itself only on CPUs with
# AVX-512 class features, and tfvision turns them on everywhere; ratios are to the faster.
RECIPES = {
    "reference, oneDNN off": (REFERENCE, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "reference, oneDNN on": (REFERENCE, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "tfvision train mnist": (TFVISION, {}),
    "tfvision --preset fast": ([*TFVISION, "--preset", "fast"], {}),
    "tfvision, reference settings": ([*TFVISION, *REFERENCE_SETTINGS.split()], {}),
    "tfvision --model mlp --epochs 10": ([*TFVISION, "--model", "mlp", "--epochs", "10"], {}),
}
DEFAULT_RECIPES = list(RECIPES)[:4]


def command(name: str, seed: int, run_dir: str) -> tuple[list[str], dict]:
    cmd, env = RECIPES[name]
    if name.startswith("reference"):
        return [*cmd, str(seed)], env
    return [*cmd, "--seed", str(seed), "--run-dir", run_dir, "--json"], env


def run(cmd: list[str], env: dict, run_dir: str) -> dict:
    """Wall time and peak RSS of the whole command (GNU time), what it printed, and for
    tfvision where the time went."""
    wall, rss_gb, stdout = timed(cmd, env)
    ended = time.time()
    out = json.loads(stdout.strip().splitlines()[-1])
    m = out.get("metrics", out)
    result = {
        "test_accuracy": m["test_accuracy"],
        "wall_seconds": wall,
        "train_images_per_second": m["train_images_per_second"],
        "peak_rss_gb": rss_gb,
        # TensorFlow imported -> first training step finished (issue 6, target 4)
        "seconds_to_first_step": m.get("seconds_to_first_step") or float("nan"),
    }
    if "stage_seconds" in m:  # metrics.json's stages, in its order, inside startup and exit
        inside = m["stage_seconds"]
        exit_ = ended - (Path(run_dir) / "metrics.json").stat().st_mtime
        stages = {"startup": wall - sum(inside.values()) - exit_, **inside, "exit": exit_}
        result["stage_seconds"] = {k: round(v, 2) for k, v in stages.items()}
    return result


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
        "reference, oneDNN off": ("cnn", {}),
        "reference, oneDNN on": ("cnn", {}),
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


def cpu_flags() -> str:
    """The vector features that decide TensorFlow's default for oneDNN."""
    flags = next(
        (
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ),
        [],
    )
    wanted = [f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx"))]
    return " ".join(sorted(wanted)) or "none of avx2, avx512*, amx*"


def run_all(args, done: dict) -> dict[str, list[dict]]:
    """Each recipe once per seed, alternating within a seed; runs in --log are not redone."""
    # each recipe's own oneDNN setting only, not one this shell left behind
    for k in ("TF_ENABLE_ONEDNN_OPTS", "TFVISION_ONEDNN"):
        os.environ.pop(k, None)
    results: dict[str, list[dict]] = {r: [] for r in args.recipes}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name in args.recipes:
                r = done.get((seed, name))
                if r is None:
                    run_dir = f"{tmp}/{seed}-{abs(hash(name))}"
                    r = run(*command(name, seed, run_dir), run_dir)
                    line = f"seed {seed} {name}: {json.dumps(r)}"
                    if args.log:
                        with args.log.open("a") as f:
                            f.write(line + "\n")
                    print(line, file=sys.stderr, flush=True)
                results[name].append(r)
    return results


def summary_table(results: dict[str, list[dict]], seeds: list[int]) -> list[str]:
    """Means over seeds; ratios to the faster of the two references."""
    keys = ("test_accuracy", "wall_seconds", "train_images_per_second", "peak_rss_gb")
    mean = {
        n: {k: statistics.mean(r[k] for r in rs) for k in (*keys, "seconds_to_first_step")}
        for n, rs in results.items()
    }
    refs = {n: m for n, m in mean.items() if n.startswith("reference")}
    fastest = min(refs, key=lambda n: refs[n]["wall_seconds"]) if refs else None
    ref = refs.get(fastest)
    lines = [
        f"Machine: {machine()}. CPU flags: {cpu_flags()}.",
        f"Means over seeds {seeds}; whole-command wall time (Python and TensorFlow import, data, "
        f"build, training, test evaluation, exit). Ratios are to the faster reference"
        + (f" ({fastest})." if fastest else " (none run)."),
        "",
        "| recipe | test accuracy (per seed) | wall s (per seed) | vs faster ref | "
        "train images/s | peak RSS GB | first step s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in mean.items():
        rs = results[name]
        ratio = f"{m['wall_seconds'] / ref['wall_seconds']:.3f}x" if ref else ""
        lines.append(
            f"| {name} | {m['test_accuracy']:.4f} ("
            + " / ".join(f"{r['test_accuracy']:.4f}" for r in rs)
            + f") | {m['wall_seconds']:.1f} ("
            + " / ".join(f"{r['wall_seconds']:.1f}" for r in rs)
            + f") | {ratio} | {m['train_images_per_second']:,.0f} | {m['peak_rss_gb']:.2f} | "
            f"{_num(m['seconds_to_first_step'])} |"
        )
    return lines


def stage_table(results: dict[str, list[dict]]) -> list[str]:
    """Where tfvision's time goes, stage by stage (means over seeds, seconds)."""
    ours = {n: rs for n, rs in results.items() if all("stage_seconds" in r for r in rs)}
    if not ours:
        return []
    stages = list(next(iter(ours.values()))[0]["stage_seconds"])
    lines = [
        "",
        "Where the time goes (seconds, means over seeds; startup: Python and the CLI up to "
        "TensorFlow's import; exit: metrics.json written to the process gone):",
        "",
        "| recipe | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for name, rs in ours.items():
        cells = [f"{statistics.mean(r['stage_seconds'][k] for r in rs):.2f}" for k in stages]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES, choices=list(RECIPES))
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
    results = run_all(args, done)
    lines = summary_table(results, args.seeds) + stage_table(results)
    lines += ["", "Per run:", ""] + [
        f"- {n}: "
        + "; ".join(f"acc {r['test_accuracy']:.4f}, {r['wall_seconds']:.1f} s" for r in rs)
        for n, rs in results.items()
    ]
    lines += compute_table(
        {
            n: {
                "train_images_per_second": statistics.mean(r["train_images_per_second"] for r in rs)
            }
            for n, rs in results.items()
        }
    )
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
