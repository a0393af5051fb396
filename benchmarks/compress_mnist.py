"""Making models smaller on MNIST: `tfvision prune` and `tfvision distill`, measured.

1. The teacher: the default recipe (`tfvision train mnist`).
2. Pruning: the teacher pruned to --sparsity (default 2 epochs at a tenth of its learning
   rate), its test accuracy, model.keras gzipped, and the pruned int8 .tflite (through the
   parity gate) against the float .tflite of the teacher, both gzipped.
3. Distillation: the same student (`mlp`) trained alone and distilled from the teacher with
   the same epochs and seed; `tfvision compare` gives the paired verdict, sizes and latencies.

    TFDS_DATA_DIR=... python benchmarks/compress_mnist.py --student-epochs 3

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
    r = subprocess.run([sys.executable, "-m", "tfvision_cli", *map(str, args), "--json"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if r.returncode:
        sys.exit(f"failed: tfvision {' '.join(map(str, args))}\n{r.stderr[-2000:]}")
    return seconds, json.loads(r.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--student", default="mlp")
    parser.add_argument("--student-epochs", type=int, default=3)
    parser.add_argument("--teacher", help="an existing run to use as the teacher")
    a = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TFVISION_RUNS_DIR"] = tmp
        root = Path(tmp)
        teacher = a.teacher or root / "teacher"
        out: dict = {}
        if not a.teacher:
            seconds, r = tfvision("train", "mnist", "--run-dir", teacher)
            m = r["metrics"]
            out["teacher"] = {"seconds": round(seconds, 1), "test_accuracy": m["test_accuracy"],
                              "params": m["params"]}  # fmt: skip
            print(json.dumps({"teacher": out["teacher"]}), flush=True)

        seconds, r = tfvision("prune", teacher, "--sparsity", a.sparsity, "--quantize", "int8",
                              "--run-dir", root / "pruned")  # fmt: skip
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

        epochs = ["--epochs", a.student_epochs]
        seconds_alone, alone = tfvision("train", "mnist", "--model", a.student, *epochs,
                                        "--run-dir", root / "alone")  # fmt: skip
        seconds_distilled, distilled = tfvision(
            "distill", teacher, "--student", a.student, *epochs, "--run-dir", root / "distilled"
        )
        _, verdict = tfvision("compare", root / "alone", root / "distilled", teacher, "--no-plots")
        cands = verdict["candidates"]
        out["distill"] = {
            "student": a.student,
            "epochs": a.student_epochs,
            "alone": {"seconds": round(seconds_alone, 1),
                      "test_accuracy": alone["metrics"]["test_accuracy"]},
            "distilled": {"seconds": round(seconds_distilled, 1),
                          "test_accuracy": distilled["metrics"]["test_accuracy"]},
            "distilled_vs_alone": {k: cands[0][k] for k in ("difference", "difference_ci95",
                                                            "mcnemar", "p_value_holm", "verdict")},
            "sizes_bytes": {"alone": verdict["baseline"]["size_bytes"],
                            "distilled": cands[0]["size_bytes"], "teacher": cands[1]["size_bytes"]},
            "latency_ms": {"alone": verdict["baseline"]["latency_ms"],
                           "distilled": cands[0]["latency_ms"], "teacher": cands[1]["latency_ms"]},
        }  # fmt: skip
        print(json.dumps({"distill": out["distill"]}), flush=True)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
