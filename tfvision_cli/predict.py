"""Predicting image files in a stream: bounded memory, input order, one result per input."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from tfvision_cli.data.images import ImageReadError, is_image_path, open_image, read_image


def iter_paths(inputs: list[str], stdin: TextIO) -> Iterator[str]:
    """Files as given, directories searched recursively (sorted), `-`: one path per stdin line."""
    for item in inputs:
        if item == "-":
            # Bytes, decoded as the file system does: a name that is not valid UTF-8 is still
            # a path (os.fsdecode keeps its bytes), whatever the locale says.
            for raw in getattr(stdin, "buffer", None) or _encoded(stdin):
                line = os.fsdecode(raw.rstrip(b"\r\n"))
                if line:
                    yield line
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for f in sorted(files):
                    if is_image_path(f) and not f.startswith("."):
                        yield os.path.join(root, f)
        else:
            yield item


def _encoded(stdin: TextIO) -> Iterator[bytes]:
    for line in stdin:  # a text stream without a byte buffer (tests' StringIO)
        yield os.fsencode(line)


def size_warning(path: str, input_shape) -> str | None:
    """A warning when an image is far from the model's input size (more than 2x either way),
    e.g. 28x28 photos into an 8x8 digits model: predictions are then seldom meaningful."""
    h, w = input_shape[:2]
    try:
        with open_image(path) as im:
            ih, iw = im.height, im.width
    except Exception:  # unreadable: reported with its result
        return None
    if max(ih / h, h / ih, iw / w, w / iw) > 2:
        return (
            f"{path} is {ih}x{iw} but the model takes {h}x{w} images: it is resized, but a model "
            "trained on images of another size seldom predicts well"
        )
    return None


def predict_paths(
    predictor, paths: Iterable[str], batch_size: int = 64, top_k: int = 5, on_warning=None
) -> Iterator[dict]:
    """One result per path, in input order: {path, label, class_name, confidence, top_k}
    or {path, error}. At most batch_size decoded images are held at a time. on_warning(text)
    hears once when the first image is far from the model's input size."""
    h, w, c = predictor.input_shape
    pending: list[tuple[str, np.ndarray | None, str | None]] = []
    checked = on_warning is None
    for path in paths:
        if not checked:
            warning = size_warning(path, (h, w))
            checked = True
            if warning:
                on_warning(warning)
        try:
            pending.append((path, read_image(path, (h, w), c), None))
        except ImageReadError as e:
            pending.append((path, None, str(e)))
        if len(pending) >= batch_size:
            yield from _flush(predictor, pending, top_k)
            pending = []
    if pending:
        yield from _flush(predictor, pending, top_k)


def _flush(predictor, pending, top_k: int) -> Iterator[dict]:
    good = [a for _, a, _ in pending if a is not None]
    probs = predictor.predict(np.stack(good), batch_size=len(good)) if good else None
    names = predictor.class_names
    k = max(1, min(top_k, len(names)))
    i = 0
    for path, array, error in pending:
        if array is None:
            yield {"path": path, "error": _reason(path, error)}
            continue
        p = probs[i]
        i += 1
        order = np.argsort(-p)[:k]
        yield {
            "path": path,
            "label": int(order[0]),
            "class_name": names[order[0]],
            "confidence": round(float(p[order[0]]), 6),
            "top_k": [
                {"class_name": names[j], "label": int(j), "probability": round(float(p[j]), 6)}
                for j in order
            ],
        }


def _reason(path: str, error: str | None) -> str:
    """The error without the path repeated in front of it."""
    prefix = f"{Path(path)}: "
    return error[len(prefix) :] if error and error.startswith(prefix) else (error or "unreadable")
