"""Pictures: image grids, confusion matrices, training curves (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError
from tfvision_cli.files import PNG_SOFTWARE as SOFTWARE
from tfvision_cli.files import atomic_file, is_tfvision_png


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Write a PNG atomically (temporary name, then rename)."""
    out = Path(out)
    try:
        check_png_replaceable(out)
        with atomic_file(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=fig.dpi, bbox_inches="tight", metadata={"Software": SOFTWARE})
    finally:
        _pyplot().close(fig)
    return out


def check_png_replaceable(out: Path) -> None:
    """A picture is replaced only if tfvision drew it (its PNG says so): never a user's file."""
    if not (out.exists() or out.is_symlink()):
        return
    from tfvision_cli.runs import RunDir

    if out.is_file() and not out.is_symlink() and RunDir(out.parent).is_ours():
        return  # a run directory is tfvision's (pictures of older versions carry no tag)
    if out.is_symlink() or not out.is_file():
        raise UsageError(
            f"{out} exists and is not a picture tfvision wrote; refusing to replace it"
        )
    if not is_tfvision_png(out):
        raise UsageError(
            f"{out} exists and was not written by tfvision; refusing to replace it",
            hint="choose another name or folder",
        )


def plain(text: str) -> str:
    """text shown literally by matplotlib: no mathtext ($...$), control characters visible."""
    from tfvision_cli.text import visible

    lines = str(text).split("\n")  # titles break lines on purpose
    return "\n".join(visible(line) for line in lines).replace("$", r"\$")


def image_grid(
    images: np.ndarray,
    titles: list[str],
    out: Path,
    suptitle: str | None = None,
    title_colors: list[str] | None = None,
) -> Path:
    """A labelled grid of uint8 images (N, H, W, C) as a PNG."""
    return save_figure(grid_figure(images, titles, suptitle, title_colors), out)


TITLE_POINTS = 9


def grid_figure(images, titles, suptitle=None, title_colors=None):
    """The figure of image_grid. Titles are wrapped to their cell and the rows given room for
    their lines, so that no title overlaps another or an image at any class-name length; the
    text extents are measured after layout and the font made smaller until none overlap."""
    plt = _pyplot()
    n = len(images)
    cols = min(8, max(1, math.ceil(math.sqrt(n))))
    rows = max(1, math.ceil(n / cols))
    h, w = images.shape[1:3]
    cell = max(1.3, min(2.2, 1.3 * max(h, w) / 28))
    for points in range(TITLE_POINTS, 4, -1):
        wrapped = [_wrap(plain(t), cell, points) for t in titles]
        lines = max((t.count("\n") + 1 for t in wrapped), default=1)
        title_height = lines * points * 1.25 / 72 + 0.1  # inches
        fig, axes = plt.subplots(
            rows,
            cols,
            figsize=(cols * cell, rows * (cell + title_height) + (0.5 if suptitle else 0)),
            dpi=110,
            squeeze=False,
        )
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
            ax.set_title(wrapped[i], fontsize=points, color=color)
        if suptitle:
            fig.suptitle(plain(suptitle), fontsize=11)
        fig.tight_layout()
        if not title_overlaps(fig):
            return fig
        plt.close(fig)
    return fig  # the smallest font: overlaps only titles no wrapping can place


def _wrap(title: str, cell_inches: float, points: int) -> str:
    """Each line of a title wrapped to the characters that fit its cell (a long name is
    broken, never run into its neighbour's)."""
    import textwrap

    per_line = max(6, int(cell_inches * 72 / (points * 0.62)))
    return "\n".join(
        "\n".join(textwrap.wrap(line, per_line, break_long_words=True) or [""])
        for line in title.split("\n")
    )


def title_overlaps(fig) -> list[tuple[int, int]]:
    """Pairs of (title, title or image) whose drawn extents overlap, after layout: the check
    image_grid makes, and what tests measure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.images]
    titles = [ax.title.get_window_extent(renderer) for ax in axes]
    pictures = [ax.images[0].get_window_extent(renderer) for ax in axes]
    found = []
    for i, t in enumerate(titles):
        for j in range(len(axes)):
            if j != i and t.overlaps(titles[j]) and (j, i) not in found:
                found.append((i, j))
            if t.overlaps(pictures[j]):
                found.append((i, -1 - j))
    return found


def confusion_matrix(cm: np.ndarray, class_names: list[str], out: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class), counts in the cells.

    Correct predictions are blue; mistakes are red on their own scale, so that a handful of
    confusions stays visible next to a diagonal of thousands.
    """
    plt = _pyplot()
    n = len(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    eye = np.eye(n, dtype=bool)
    off = np.where(eye, np.nan, norm)
    diag = np.where(eye, norm, np.nan)
    size = min(max(5.0, 0.55 * n + 2), 30)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=110)
    ax.imshow(diag, cmap="Blues", vmin=0, vmax=1)
    worst = np.nanmax(off) if n > 1 and np.nanmax(off) > 0 else 1.0
    im = ax.imshow(off, cmap="Reds", vmin=0, vmax=worst)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="mistakes: share of the true class")
    ticks = np.arange(n)
    labels = [plain(c) for c in class_names] if n <= 40 else [""] * n
    long = max(map(len, class_names)) > 2
    ax.set_xticks(ticks, labels, rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        for t in range(n):
            for p in range(n):
                if cm[t, p]:
                    level = norm[t, p] if t == p else norm[t, p] / worst
                    ax.text(
                        p,
                        t,
                        f"{cm[t, p]}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if level > 0.55 else "black",
                    )
    ax.set_title(plain(title))
    fig.tight_layout()
    return save_figure(fig, out)


def training_curves(rows: list[dict], out: Path) -> Path:
    """Loss and accuracy per epoch, training and validation, from history.csv rows."""
    plt = _pyplot()
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            if rows and f"{prefix}{key}" in rows[0]:
                ax.plot(
                    epochs,
                    [float(r[f"{prefix}{key}"]) for r in rows],
                    style,
                    label=f"{'validation' if prefix else 'training'} {label}",
                    markersize=4,
                )
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, out)


def explanation(image: np.ndarray, heatmap: np.ndarray, title: str, out: Path) -> Path:
    """The image, its heatmap, and the heatmap over the image, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9), dpi=110)
    grey = image[..., 0] if image.shape[-1] == 1 else image
    cmap = "gray" if image.shape[-1] == 1 else None
    for ax, label in zip(axes, ("image", "heatmap", "overlay"), strict=True):
        ax.axis("off")
        ax.set_title(label, fontsize=9)
    axes[0].imshow(grey, cmap=cmap, vmin=0, vmax=255)
    axes[1].imshow(heatmap, cmap="inferno")
    axes[2].imshow(grey, cmap=cmap, vmin=0, vmax=255)
    axes[2].imshow(heatmap, cmap="inferno", alpha=0.55)
    fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def robustness(report: dict, out: Path) -> Path:
    """Accuracy against epsilon for each attack, and against severity for each corruption."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=110)
    for kind in sorted({a["attack"] for a in report["attacks"]}):
        rows = [a for a in report["attacks"] if a["attack"] == kind]
        left.plot([a["eps"] for a in rows], [a["accuracy"] for a in rows], "o-", label=kind)
    if report.get("random_noise"):
        noise = report["random_noise"]
        left.plot(
            [r["eps"] for r in noise],
            [r["accuracy"] for r in noise],
            "x:",
            color="grey",
            label="random noise",
        )
    if report.get("warnings"):
        left.text(
            0.02,
            0.03,
            f"{len(report['warnings'])} sign(s) of gradient masking:\nsee "
            "the warnings; check with a stronger attack",
            transform=left.transAxes,
            fontsize=7,
            color="#b00020",
            va="bottom",
        )
    left.set(
        xlabel="epsilon (share of the pixel range)",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title="Adversarial attacks",
    )
    for name in sorted({c["name"] for c in report["corruptions"]}):
        rows = [c for c in report["corruptions"] if c["name"] == name]
        right.plot([c["severity"] for c in rows], [c["accuracy"] for c in rows], "o-", label=name)
    right.set(xlabel="severity", ylim=(0, 1.02), title="Corruptions")
    for ax in (left, right):
        ax.axhline(report["clean_accuracy"], color="grey", lw=0.8, ls="--")
        if ax.lines[1:]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out)


def reliability_diagram(calibration: dict, out: Path) -> Path:
    """Accuracy against confidence per bin, the gap to the diagonal shaded, the bin counts."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    bins = calibration["bins"]
    width = bins[0]["high"] - bins[0]["low"]
    filled = [b for b in bins if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in filled]
    top.bar(
        centres, [b["accuracy"] for b in filled], width=width, color="#4a7fb5", label="accuracy"
    )
    top.bar(
        centres,
        [b["confidence"] - b["accuracy"] for b in filled],
        bottom=[b["accuracy"] for b in filled],
        width=width,
        color="#d95f5f",
        alpha=0.45,
        hatch="//",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    temperature = calibration.get("temperature")
    how = f", temperature {temperature:.3g}" if temperature else ", not calibrated"
    top.set(
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"ECE {calibration['ece']:.4f}, MCE {calibration['mce']:.4f}{how}",
    )
    top.legend(fontsize=8, loc="upper left")
    bottom.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["count"] for b in bins], width=width)
    bottom.set(xlabel="confidence", ylabel="images", yscale="symlog")
    fig.tight_layout()
    return save_figure(fig, out)


def risk_coverage(risk: np.ndarray, aurc: float, out: Path) -> Path:
    """The error rate of the k most confident images (risk[k-1]) against the share kept."""
    plt = _pyplot()
    coverage = np.arange(1, len(risk) + 1) / len(risk)
    fig, ax = plt.subplots(figsize=(4.6, 3.4), dpi=110)
    ax.plot(coverage, risk, lw=1.2)
    ax.set(
        xlabel="coverage (share of images answered, most confident first)",
        ylabel="error rate of those answered",
        xlim=(0, 1),
        ylim=(0, max(float(risk.max()) * 1.1, 1e-3)),
        title=f"Risk-coverage: AURC {aurc:.4f}",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out)
