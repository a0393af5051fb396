"""Peak memory of tfvision on image sets larger than memory should matter (issue 20).

    python benchmarks/large_data.py --sizes 10000 30000 [100000] [--write]

For each size: N RGB 128x128 JPEG images in 10 class folders are generated (smooth random
colour fields with noise, ~5 KB each), then three whole commands are timed and their peak RSS
taken by GNU time:

1. `tfvision preprocess SRC --out PREPARED`
2. `tfvision train PREPARED --epochs 1 --steps-per-epoch S` (the default --cache auto)
3. `tfvision train SRC --epochs 1 --steps-per-epoch S` (the raw folder, streamed)

Decoded, 30,000 such images take 1.47 GB. --write stores the table and a plot of peak RSS
against N in benchmarks/RESULTS.md (section "Data larger than memory") and
benchmarks/large_data.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import timed

HERE = Path(__file__).resolve().parent
SECTION = "## Data larger than memory (issue 20)"
TFVISION = [sys.executable, "-m", "tfvision_cli"]


def generate(root: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 10
        field = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        field[..., label % 3] = 40 + 20 * label  # a class-dependent channel level
        image = Image.fromarray(field).resize((128, 128), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 12, (128, 128, 3))
        out = root / f"class_{label}" / f"{i:06d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, quality=90)


def measure(cmd: list[str]) -> dict:
    wall, rss_gb, out = timed(cmd)
    return {"seconds": round(wall, 1), "peak_rss_gb": round(rss_gb, 3), "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000])
    ap.add_argument("--steps", type=int, default=20, help="training steps")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="training batch (at 128x128, fastnet's activations at the default 128 take ~0.7 GB)",
    )
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            src, prepared = Path(tmp) / f"images_{n}", Path(tmp) / f"prepared_{n}"
            start = time.perf_counter()
            generate(src, n)
            print(f"{n}: generated in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            steps = [
                "--epochs",
                "1",
                "--steps-per-epoch",
                str(args.steps),
                "--json",
                "--batch-size",
                str(args.batch_size),
            ]
            runs = {
                "preprocess": [*TFVISION, "preprocess", str(src), "--out", str(prepared)],
                "train, prepared": [
                    *TFVISION,
                    "train",
                    str(prepared),
                    *steps,
                    "--run-dir",
                    str(Path(tmp) / f"run_p{n}"),
                ],
                "train, raw folder": [
                    *TFVISION,
                    "train",
                    str(src),
                    *steps,
                    "--run-dir",
                    str(Path(tmp) / f"run_r{n}"),
                ],
            }
            for name, cmd in runs.items():
                r = measure(cmd)
                cache = ""
                if name.startswith("train"):
                    cache = json.loads(r["out"].strip().splitlines()[-1])["metrics"]["notes"]
                    cache = cache.get("cache", "memory")
                rows.append({"images": n, "command": name, "cache": cache, **r})
                rows[-1].pop("out")
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            subprocess.run(["rm", "-rf", str(src), str(prepared)], check=True)
    table = _table(rows, args.steps, args.batch_size)
    print(table)
    if args.write:
        _plot(rows, HERE / "large_data.png")
        _store(table)


def _table(rows: list[dict], steps: int, batch: int) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        SECTION,
        "",
        f"Made by `python benchmarks/large_data.py` on {time.strftime('%Y-%m-%d')}, {cpu}, "
        f"{os.cpu_count()} cores. RGB 128x128 JPEGs in 10 class folders (decoded: 49 KB an "
        "image, 1.47 GB for 30,000); whole commands, peak RSS by GNU time; training is the "
        f"default model (fastnet) for one epoch capped at {steps} steps of {batch} images, "
        "with its validation and test passes.",
        "",
        "| images | decoded GB | command | cache | wall s | peak RSS GB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        decoded = r["images"] * 128 * 128 * 3 / 1e9
        lines.append(
            f"| {r['images']:,} | {decoded:.2f} | {r['command']} | {r['cache']} | "
            f"{r['seconds']} | {r['peak_rss_gb']:.2f} |"
        )
    lines += ["", "![peak RSS against the number of images](large_data.png)", ""]
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for command in dict.fromkeys(r["command"] for r in rows):
        pts = [(r["images"], r["peak_rss_gb"]) for r in rows if r["command"] == command]
        ax.plot(*zip(*pts, strict=True), marker="o", label=command)
    sizes = sorted({r["images"] for r in rows})
    ax.plot(sizes, [n * 128 * 128 * 3 / 1e9 for n in sizes], "k:", label="decoded images")
    ax.axhline(1.5, color="red", lw=0.8, label="target 1.5 GB")
    ax.set_xlabel("images")
    ax.set_ylabel("peak RSS, GB")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _store(table: str) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text()
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + table + (text[end + 1 :] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + table
    path.write_text(text)


if __name__ == "__main__":
    main()
