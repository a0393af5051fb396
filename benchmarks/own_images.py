"""The default recipe on a user's own images: `tfvision train ROOT` against `--preset
keras-example` on the same split-folder tree (ROOT/train/<class>/*.png, ROOT/test/<class>/*.png),
whole command timed, alternated, as in mnist_recipes.py.

The tree is made from MNIST (the only dataset on these machines): --train images from MNIST's
train split and --test from its test split, written as PNG files. It exercises the folder path
(split folders, decoding, the epochs chosen from the dataset's size), not a new difficulty: the
figures of issue 14 on other data are checked outside this repository.

    python benchmarks/own_images.py --train 20000 --test 5000 --seeds 0 1
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


def write_tree(root: Path, n_train: int, n_test: int) -> None:
    import numpy as np
    import tensorflow_datasets as tfds
    from PIL import Image

    for split, n in (("train", n_train), ("test", n_test)):
        ds = tfds.load("mnist", split=f"{split}[:{n}]", as_supervised=True, download=False)
        for i, (image, label) in enumerate(tfds.as_numpy(ds)):
            folder = root / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(image)[..., 0]).save(folder / f"{i}.png")


def run(args: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", "train", *args, "--json", "--quiet"],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(r.stderr)
    return seconds, json.loads(r.stdout)["metrics"]


# name -> flags. Below 5,000 training images a class the default adapts (random shifts,
# fastnet at width 24); "before" is the recipe without those choices, as it was.
RECIPES = {
    "default": [],
    "before: --augment none --model-option width=32": [
        "--augment",
        "none",
        "--model-option",
        "width=32",
    ],
    "keras-example": ["--preset", "keras-example"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "digits_tree"
        write_tree(root, a.train, a.test)
        os.environ["TFVISION_RUNS_DIR"] = str(Path(tmp) / "runs")
        for seed in a.seeds:
            for name, extra in RECIPES.items():
                seconds, m = run([str(root), "--seed", str(seed), *extra])
                print(
                    json.dumps(
                        {
                            "recipe": name,
                            "seed": seed,
                            "train_images": a.train,
                            "test_accuracy": m["test_accuracy"],
                            "test_examples": m["test_examples"],
                            "epochs": m["epochs"],
                            "wall_seconds": round(seconds, 1),
                            "train_seconds": m["train_seconds"],
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
