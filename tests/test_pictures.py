"""Pictures that read: samples across classes, titles that never overlap, a terminal confusion
matrix that never cuts a class name."""

from __future__ import annotations

import numpy as np
import pytest

LONG = [f"class_{i}_with_a_rather_long_name_{i:02d}"[:30] for i in range(10)]


def _overlaps(fig) -> list:
    """Every pair of drawn texts, or of a text and an image, whose extents overlap (measured
    on the rendered figure)."""
    from matplotlib.image import AxesImage

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = [*fig.texts, *(t for ax in fig.axes for t in (ax.title, *ax.texts))]
    texts = [t.get_window_extent(renderer) for t in drawn if t.get_text().strip()]
    images = [im.get_window_extent(renderer) for im in fig.findobj(AxesImage)]
    found = [(a, b) for i, a in enumerate(texts) for b in texts[i + 1 :] if a.overlaps(b)]
    return found + [(a, b) for a in texts for b in images if a.overlaps(b)]


@pytest.mark.parametrize("count, side", [(32, 28), (24, 28), (7, 64), (3, 16)])
def test_grid_titles_never_overlap_with_30_character_class_names(count, side):
    from tfvision_cli import plots

    assert all(len(n) == 30 for n in LONG)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (count, side, side, 1), dtype=np.uint8)
    titles = [
        f"true {LONG[i % 10]}\nA {LONG[(i + 1) % 10]}\nB {LONG[(i + 3) % 10]}" for i in range(count)
    ]
    fig = plots.grid_figure(images, titles, suptitle="A = one-run, B = another: 99 disagreements")
    assert _overlaps(fig) == []
    # and every character of every name is drawn (wrapped, never cut)
    drawn = "".join(ax.title.get_text() for ax in fig.axes).replace("\n", "")
    assert all(name in drawn for name in LONG if any(name in t for t in titles))


def test_disagreements_sample_every_class_of_a_sorted_folder(tmp_path, monkeypatch):
    """A folder dataset is read class by class: the 32 disagreements drawn are a sample of
    every class, not the first 32 in file order."""
    from tfvision_cli import plots
    from tfvision_cli.evaluation.compare import Comparison, write_disagreements

    labels = np.repeat(np.arange(10), 100)  # sorted, as a folder of class folders reads
    base = labels.copy()
    other = (labels + 1) % 10  # B disagrees everywhere
    drawn = {}
    monkeypatch.setattr(
        plots, "image_grid", lambda images, titles, out, **kw: drawn.update(titles=titles) or out
    )
    comparison = Comparison(
        {"class_names": LONG}, np.zeros((1000, 8, 8, 1), np.uint8), labels, [base, other]
    )
    write_disagreements(comparison, tmp_path, ["a", "b"])
    trues = {t.split("\n")[0] for t in drawn["titles"]}
    assert len(drawn["titles"]) == 32 and trues == {f"true {n}" for n in LONG}


def test_the_terminal_confusion_matrix_uses_indices_and_a_legend_when_names_do_not_fit(
    monkeypatch,
):
    from tfvision_cli import console
    from tfvision_cli.cli.evaluate import _matrix_columns

    cm = [[90 if i == j else 1 for j in range(10)] for i in range(10)]
    monkeypatch.setattr(console.out, "_width", 120)
    columns, legend = _matrix_columns(LONG, cm)
    assert columns == [str(i) for i in range(10)]
    assert all(f"{i} = {n}" in legend for i, n in enumerate(LONG))
    short = [str(i) for i in range(10)]
    assert _matrix_columns(short, cm) == (short, None)
