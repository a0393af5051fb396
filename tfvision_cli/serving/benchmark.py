"""`tfvision benchmark`: size, accuracy, latency and throughput of a model in every format."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfvision_cli.artifacts.formats import variants
from tfvision_cli.errors import UsageError, did_you_mean


def parse_variants(text: str) -> list[str]:
    """'keras,tflite-int8' -> ['keras', 'tflite-int8']; a variant is a format, optionally with
    its quantization (formats.variants())."""
    known = variants()
    names = [v.strip() for v in text.split(",") if v.strip()]
    for v in names:
        if v not in known:
            raise UsageError(
                f"unknown format {v!r}.{did_you_mean(v, known)} Choose from: {', '.join(known)}"
            )
    return names


def _timings(fn: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times


def measure(
    predictor,
    images: np.ndarray,
    labels: np.ndarray,
    runs: int = 100,
    warmup: int = 10,
    batch: int = 256,
    fn_one: Callable | None = None,
) -> dict:
    """Accuracy on (images, labels); batch-1 latency p50/p95 (ms); images/s at `batch`."""
    probs = predictor.predict(images, batch_size=batch)
    one = images[:1]
    latency = _timings(fn_one or (lambda: predictor.predict(one, batch_size=1)), runs, warmup)
    big = images[:batch]
    t = _timings(
        lambda: predictor.predict(big, batch_size=batch), max(3, runs // 20), max(1, warmup // 5)
    )
    return {
        "accuracy": float(np.mean(probs.argmax(1) == labels)),
        "latency_ms_p50": float(np.percentile(latency, 50) * 1e3),
        "latency_ms_p95": float(np.percentile(latency, 95) * 1e3),
        "latency_runs": runs,
        "throughput_images_per_s": float(len(big) / np.median(t)),
        "throughput_batch": int(len(big)),
        "throughput_runs": int(len(t)),
    }


def benchmark(
    source,
    variants: list[str],
    runs: int = 100,
    warmup: int = 10,
    batch: int = 256,
    on_progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """One row per variant; exports what is missing (with the parity gate) first."""
    from tfvision_cli.artifacts.export import default_folder, export, held_out
    from tfvision_cli.artifacts.loaders import load_exported
    from tfvision_cli.files import read_marker

    if source.keras_model is None:
        raise UsageError("benchmark needs a trained Keras model: a run directory, latest or .keras")
    images, labels = held_out(source, 10**9)  # the whole test split
    rows = []
    for variant in variants:
        if on_progress:
            on_progress(variant)
        if variant == "keras":
            model = source.keras_model
            one = images[:1]
            row = measure(
                source,
                images,
                labels,
                runs,
                warmup,
                batch,
                fn_one=lambda m=model, x=one: m.predict(x, verbose=0),
            )
            row.update(
                format="keras",
                variant="keras (model.predict)",
                size_bytes=Path(source.path).stat().st_size,
            )
            rows.append(row)
            row = measure(source, images, labels, runs, warmup, batch)
            row.update(
                format="keras",
                variant="keras (tf.function)",
                size_bytes=Path(source.path).stat().st_size,
            )
            rows.append(row)
            continue
        fmt, _, quantize = variant.partition("-")
        folder = default_folder(source, fmt, quantize or "none")
        meta_path = folder / "metadata.json"
        if (read_marker(folder) or {}).get("kind") != "export":
            export(source, fmt, folder, quantize or "none")
        meta = json.loads(meta_path.read_text())
        predictor = load_exported(folder, trust=True)  # tfvision's own export of source
        row = measure(predictor, images, labels, runs, warmup, batch)
        row.update(format=fmt, variant=variant, size_bytes=meta["size_bytes"], path=str(folder))
        rows.append(row)
    return rows
