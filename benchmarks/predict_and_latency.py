"""`tfvision predict` on 10,000 PNG files, and batch-1 latency of the .tflite export vs Keras.

    TFDS_DATA_DIR=... python benchmarks/predict_and_latency.py RUN_DIR [--images 10000]

RUN_DIR is an MNIST run (e.g. from `tfvision train mnist --preset fast`). The script writes the
MNIST test images as PNG files into a temporary folder, times the whole `tfvision predict`
command over them (TensorFlow import included) and reads its own images/s line, checks the
predictions against the labels, times the model alone in-process on the same images and batch
size (the ceiling for `predict`), then runs `tfvision benchmark --formats keras,tflite` for the
batch-1 latencies (issue 6, target 6: tflite ≤ 1/5 of Keras `model.predict` on one image).
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--images", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        labels = write_pngs(folder, args.images)
        start = time.perf_counter()
        p = subprocess.run(
            [PY, "-m", "tfvision_cli", "predict", args.run_dir, str(folder), "--json"],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if p.returncode != 0:
            raise SystemExit(p.stderr[-2000:])
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    predicted = [int(r["class_name"]) for r in sorted(rows, key=lambda r: r["path"])]
    accuracy = float(np.mean(np.array(predicted) == np.array(labels)))
    reported = re.search(r"\(([\d,]+) images/s\)", p.stderr)
    print(
        f"predict: {len(rows):,} PNG files, accuracy {accuracy:.4f}, whole command {wall:.1f} s "
        f"({len(rows) / wall:,.0f} images/s with start-up), tfvision reports "
        f"{reported.group(1) if reported else '?'} images/s; the model alone, in-process at "
        f"predict's batch size 64: {model_throughput(args.run_dir, args.images):,.0f} images/s"
    )
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
