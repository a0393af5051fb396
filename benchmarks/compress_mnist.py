"""Making models smaller on MNIST: `tfvision prune` and `tfvision distill`, measured.

1. The teacher: the default recipe (`tfvision train mnist`).
2. Pruning: the teacher pruned to --sparsity (default 2 epochs at a tenth of its learning
   rate), its test accuracy, model.keras gzipped, and the pruned int8 .tflite (through the
   parity gate) against the float .tflite of the teacher, both gzipped.
3. Distillation: the same student (`mlp`, --student-option) trained alone and distilled from
   the teacher with the same epochs and seed, for each of --seeds; `tfvision compare` gives the
   paired verdict, sizes and latencies.

    TFDS_DATA_DIR=... python benchmarks/compress_mnist.py --student-option hidden=800 \
        --student-option depth=2 --seeds 0 1 2 3 4

Prints one JSON object per step and a summary; RESULTS.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tfvision(*args) -> tuple[float, dict]:
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if r.returncode:
        sys.exit(f"failed: tfvision {' '.join(map(str, args))}\n{r.stderr[-2000:]}")
    return seconds, json.loads(r.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--student", default="mlp")
    parser.add_argument(
        "--student-option",
        action="append",
        default=[],
        help="KEY=VALUE for the student (repeatable), e.g. hidden=800",
    )
    parser.add_argument("--student-epochs", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--skip-prune", action="store_true")
    parser.add_argument("--teacher", help="an existing run to use as the teacher")
    parser.add_argument(
        "--alone", help="an existing run of the student trained alone (one seed: its own)"
    )
    parser.add_argument(
        "--distill-arg",
        action="append",
        default=[],
        help="an extra argument for `tfvision distill` (repeatable), e.g. "
        "--distill-arg=--label-smoothing --distill-arg=0",
    )
    a = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TFVISION_RUNS_DIR"] = tmp
        root = Path(tmp)
        teacher = a.teacher or root / "teacher"
        out: dict = {}
        if not a.teacher:
            seconds, r = tfvision("train", "mnist", "--run-dir", teacher)
            m = r["metrics"]
            out["teacher"] = {
                "seconds": round(seconds, 1),
                "test_accuracy": m["test_accuracy"],
                "params": m["params"],
            }
            print(json.dumps({"teacher": out["teacher"]}), flush=True)

        if not a.skip_prune:
            seconds, r = tfvision(
                "prune",
                teacher,
                "--sparsity",
                a.sparsity,
                "--quantize",
                "int8",
                "--run-dir",
                root / "pruned",
            )
            sizes = r["sizes"]
            out["prune"] = {
                "seconds": round(seconds, 1),
                "sparsity": round(r["sparsity"]["overall"], 4),
                "test_accuracy_before": r["test_accuracy_before"],
                "test_accuracy_after": r["test_accuracy_after"],
                "keras_gzip_before": sizes["keras_before_gzip"],
                "keras_gzip_after": sizes["keras_after_gzip"],
                "tflite_float_gzip_before": sizes["tflite_float_before_gzip"],
                "tflite_int8_gzip_after": sizes["tflite_int8_after_gzip"],
                "tflite_gzip_ratio": round(
                    sizes["tflite_float_before_gzip"] / sizes["tflite_int8_after_gzip"], 2
                ),
            }
            print(json.dumps({"prune": out["prune"]}), flush=True)

        out["distill"] = [distill_pair(a, teacher, root, seed) for seed in a.seeds]
        print(json.dumps(out))


def distill_pair(a, teacher: Path, root: Path, seed: int) -> dict:
    """The student alone and distilled, same epochs and seed; compare's paired verdict."""
    common = ["--epochs", a.student_epochs, "--seed", seed]
    for option in a.student_option:
        common += ["--model-option", option]
    alone, distilled = root / f"alone-{seed}", root / f"distilled-{seed}"
    if a.alone:
        alone = Path(a.alone)
        seconds_alone = None
        r_alone = {"metrics": json.loads((alone / "metrics.json").read_text())}
    else:
        seconds_alone, r_alone = tfvision(
            "train", "mnist", "--model", a.student, *common, "--run-dir", alone
        )
    seconds_distilled, r_distilled = tfvision(
        "distill",
        teacher,
        "--student",
        a.student,
        *common,
        "--temperature",
        a.temperature,
        "--alpha",
        a.alpha,
        *a.distill_arg,
        "--run-dir",
        distilled,
    )
    _, verdict = tfvision("compare", alone, distilled, teacher, "--no-plots")
    cands = verdict["candidates"]
    out = {
        "student": a.student,
        "student_options": a.student_option,
        "epochs": a.student_epochs,
        "seed": seed,
        "temperature": a.temperature,
        "alpha": a.alpha,
        "distill_args": a.distill_arg,
        "alone": {
            "seconds": seconds_alone and round(seconds_alone, 1),
            "test_accuracy": r_alone["metrics"]["test_accuracy"],
        },
        "distilled": {
            "seconds": round(seconds_distilled, 1),
            "test_accuracy": r_distilled["metrics"]["test_accuracy"],
        },
        "distilled_vs_alone": {
            k: cands[0][k]
            for k in ("difference", "difference_ci95", "mcnemar", "p_value_holm", "verdict")
        },
        "sizes_bytes": {
            "alone": verdict["baseline"]["size_bytes"],
            "distilled": cands[0]["size_bytes"],
            "teacher": cands[1]["size_bytes"],
        },
        "latency_ms": {
            "alone": verdict["baseline"]["latency_ms"],
            "distilled": cands[0]["latency_ms"],
            "teacher": cands[1]["latency_ms"],
        },
    }
    print(json.dumps({"distill": out}), flush=True)
    return out


if __name__ == "__main__":
    main()
