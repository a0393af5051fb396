"""Pictures: image grids, confusion matrices, training curves (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Write a PNG atomically (temporary name, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=fig.dpi, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
        _pyplot().close(fig)
    return out


def image_grid(images: np.ndarray, titles: list[str], out: Path, suptitle: str | None = None,
               title_colors: list[str] | None = None) -> Path:
    """A labelled grid of uint8 images (N, H, W, C) as a PNG."""
    plt = _pyplot()
    n = len(images)
    cols = min(8, max(1, math.ceil(math.sqrt(n))))
    rows = max(1, math.ceil(n / cols))
    h, w = images.shape[1:3]
    cell = max(1.3, min(2.2, 1.3 * max(h, w) / 28))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * (cell + 0.3)), dpi=110,
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        color = title_colors[i] if title_colors else "black"
        ax.set_title(titles[i], fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out)
