"""Explanations and robustness on MNIST (issue 18), measured: the default recipe against the
same recipe with adversarial training.

For each model (`tfvision train mnist`, then `--adversarial fgsm:EPS` and `--adversarial
pgd:EPS` by default):
- training wall time (whole command) and clean test accuracy;
- `tfvision robustness` on the first --limit test images: FGSM and PGD (--steps) at each eps;
- how much of each explanation method's map lies on the digit's strokes (pixels >= 64) over
  their share of the area, averaged over the first --explain test images (1.0: no better than
  uniform), the property issue 18 asks of maps.

    TFDS_DATA_DIR=... python benchmarks/robustness_mnist.py --adversarial fgsm:0.3 pgd:0.3

Prints one JSON object per model and a Markdown table; RESULTS.md keeps the figures.
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

METHODS = (
    ("saliency", {}),
    ("saliency", {"smooth": 16}),
    ("integrated-gradients", {"steps": 16}),
    ("gradcam", {}),
)


def tfvision(*args) -> tuple[float, dict]:
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", *map(str, args), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        sys.exit(f"failed: tfvision {' '.join(map(str, args))}\n{r.stderr[-2000:]}")
    return time.perf_counter() - start, json.loads(r.stdout)


def mass_ratios(model_file: Path, count: int) -> dict[str, float]:
    """Each method's mass on the strokes over their share of the area (in this process)."""
    import numpy as np
    import tensorflow_datasets as tfds

    from tfvision_cli.analysis.explain import Explainer, mass_on
    from tfvision_cli.models.io import load_model

    ds = tfds.load("mnist", split=f"test[:{count}]", as_supervised=True, download=False)
    images, labels = (np.stack(a) for a in zip(*tfds.as_numpy(ds), strict=True))
    model = load_model(model_file)
    out = {}
    for method, options in METHODS:
        name = "smoothgrad" if options.get("smooth") else method
        maps = Explainer(model, method, **options).maps(images, labels)
        out[name] = round(float(mass_on(maps, images[..., 0] >= 64).mean()), 3)
    return out


def measure(run: Path, train_seconds: float, a) -> dict:
    _, r = tfvision(
        "robustness",
        run,
        "--attack",
        "fgsm,pgd",
        "--eps",
        a.eps,
        "--steps",
        a.steps,
        "--corruptions",
        "",
        "--limit",
        a.limit,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "train_seconds": round(train_seconds, 1),
        "test_accuracy": metrics["test_accuracy"],
        "clean_accuracy": r["clean_accuracy"],
        "attacks": {f"{x['attack']} {x['eps']:g}": x["accuracy"] for x in r["attacks"]},
        "maps": mass_ratios(run / "model.keras", a.explain),
    }


def table(rows: dict[str, dict]) -> str:
    first = next(iter(rows.values()))
    attacks, maps = list(first["attacks"]), list(first["maps"])
    head = ["model", "test acc", "train s", *attacks, *(f"{m} ×" for m in maps)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [
            name,
            f"{r['test_accuracy']:.4f}",
            f"{r['train_seconds']:.0f}",
            *(f"{r['attacks'][k]:.3f}" for k in attacks),
            *(f"{r['maps'][m]:.2f}" for m in maps),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adversarial", nargs="*", default=["fgsm:0.3", "pgd:0.3"])
    parser.add_argument("--eps", default="0.1,0.2,0.3")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--limit", type=int, default=2000, help="test images attacked")
    parser.add_argument("--explain", type=int, default=256, help="test images explained")
    parser.add_argument("--default-run", help="an existing default-recipe run to reuse")
    a = parser.parse_args()

    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TFVISION_RUNS_DIR"] = tmp
        runs = [("default recipe", [], a.default_run)]
        runs += [(f"--adversarial {spec}", ["--adversarial", spec], None) for spec in a.adversarial]
        for name, flags, existing in runs:
            run, seconds = Path(existing or Path(tmp) / name.replace(" ", "_")), 0.0
            if not existing:
                seconds, _ = tfvision("train", "mnist", *flags, "--run-dir", run)
            rows[name] = measure(run, seconds, a)
            print(json.dumps({name: rows[name]}), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
