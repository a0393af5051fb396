"""`tfvision predict` on 10,000 PNG files, and batch-1 latency of the .tflite export vs Keras.

    TFDS_DATA_DIR=... python benchmarks/predict_and_latency.py RUN_DIR [--images 10000]
        [--repeats 3] [--before SRC]

RUN_DIR is an MNIST run (e.g. from `tfvision train mnist --preset fast`). The script writes the
MNIST test images as PNG files into a temporary folder, times the whole `tfvision predict`
command over them (TensorFlow import included) and reads its own images/s line and batch size,
checks the predictions against the labels, times the model alone in-process on the same images
and batch size (the ceiling for `predict`), then runs `tfvision benchmark --formats
keras,tflite` for the batch-1 latencies (issue 6, target 6: tflite ≤ 1/5 of Keras
`model.predict` on one image).

--before SRC runs an earlier tfvision's `predict` too, from a source checkout (`git worktree
add /tmp/before 64b383e`, the commit issue 37 measured), alternating with this one on the same
folder, so that a speed-up is measured on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PY = sys.executable


def write_pngs(folder: Path, n: int) -> list[int]:
    from PIL import Image

    from tfvision_cli.data.catalog import open_dataset

    images, labels = open_dataset("mnist").arrays("test")
    for i in range(n):
        Image.fromarray(images[i].squeeze(-1)).save(folder / f"{i:05d}.png")
    return [int(v) for v in labels[:n]]


def model_throughput(run_dir: str, n: int, batch_size: int = 64) -> float:
    """Images/s of the model alone, in this process, on decoded test images at predict's
    default batch size: what `predict` would reach if reading files and writing records cost
    nothing."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.data.catalog import open_dataset

    predictor = load_predictor(run_dir)
    images = open_dataset("mnist").arrays("test")[0][:n]
    predictor.predict(images[: 2 * batch_size], batch_size=batch_size)  # traced, warm
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        predictor.predict(images, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def predict_once(run_dir: str, folder: Path, src: str | None = None) -> dict:
    """One whole `tfvision predict RUN folder --json`, from src's checkout if given."""
    env = dict(os.environ, PYTHONPATH=src) if src else None
    start = time.perf_counter()
    p = subprocess.run(
        [PY, "-m", "tfvision_cli", "predict", run_dir, str(folder), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=src,  # python -m looks in the working directory before PYTHONPATH
    )
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    reported = re.search(r"\(([\d,]+) images/s\)", p.stderr)
    batch = re.search(r"batches of (\d+)", p.stderr)
    return {
        "wall": wall,
        "rows": [json.loads(line) for line in p.stdout.splitlines()],
        "images_per_second": int(reported.group(1).replace(",", "")) if reported else None,
        "batch_size": int(batch.group(1)) if batch else 64,  # 64: before batches were chosen
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--before", help="source checkout of an earlier tfvision, run alternately")
    args = ap.parse_args()
    args.run_dir = os.path.abspath(args.run_dir)  # --before runs in its own checkout
    runs: dict[str, list[dict]] = {"this": [], "before": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        labels = write_pngs(folder, args.images)
        for _ in range(args.repeats):
            for name, src in (("before", args.before), ("this", None)):
                if name == "this" or src:
                    runs[name].append(predict_once(args.run_dir, folder, src))
    for name in ("before", "this"):
        for r in runs[name]:
            predicted = [int(x["class_name"]) for x in sorted(r["rows"], key=lambda x: x["path"])]
            accuracy = float(np.mean(np.array(predicted) == np.array(labels)))
            print(
                f"predict ({name}): {len(r['rows']):,} PNG files in batches of {r['batch_size']}, "
                f"accuracy {accuracy:.4f}, whole command {r['wall']:.1f} s "
                f"({len(r['rows']) / r['wall']:,.0f} images/s with start-up), tfvision reports "
                f"{r['images_per_second'] or 0:,} images/s"
            )
    if runs["before"]:
        mean = {k: np.mean([r["images_per_second"] for r in v]) for k, v in runs.items()}
        print(
            f"mean reported images/s: before {mean['before']:,.0f}, this {mean['this']:,.0f} "
            f"({mean['this'] / mean['before']:.2f}x; target >= 2x)"
        )
    batch = runs["this"][-1]["batch_size"]
    alone = model_throughput(args.run_dir, args.images, batch)
    print(f"the model alone, in-process at predict's batch size {batch}: {alone:,.0f} images/s")
    b = subprocess.run(
        [
            PY,
            "-m",
            "tfvision_cli",
            "benchmark",
            args.run_dir,
            "--formats",
            "keras,tflite",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    if b.returncode != 0:
        raise SystemExit(b.stderr[-2000:])
    by = {r["variant"]: r["latency_ms_p50"] for r in json.loads(b.stdout)}
    k, f, t = by["keras (model.predict)"], by["keras (tf.function)"], by["tflite"]
    print(
        f"batch-1 latency p50: keras model.predict {k:.2f} ms, keras tf.function {f:.2f} ms, "
        f"tflite {t:.3f} ms (tflite / model.predict = {t / k:.4f}; target <= 0.2)"
    )


if __name__ == "__main__":
    main()
