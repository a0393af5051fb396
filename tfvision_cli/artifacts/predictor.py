"""Predictor: a trained model in any form (run, .keras, an export) behind one API; loaders.py
makes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfvision_cli.errors import TfvisionError


@dataclass
class Predictor:
    path: Path
    format: str  # "keras", "savedmodel", "tflite", "onnx"
    class_names: list[str]
    input_shape: tuple[int, int, int]
    dataset: str | None = None
    run_dir: Path | None = None
    data_dir: str | None = None
    _fn: object = field(default=None, repr=False)
    _keras_model: object = field(default=None, repr=False)
    named: bool = True  # False: the model came without class names ('0'..'n-1' stand in)
    # `tfvision calibrate`'s record (temperature, conformal scores), applied inside the model
    calibration: dict | None = None

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images of the model's input shape."""
        out = [
            np.asarray(self._fn(images[i : i + batch_size]), dtype=np.float32)
            for i in range(0, len(images), batch_size)
        ]
        if not out:
            return np.zeros((0, len(self.class_names)), np.float32)
        probs = np.concatenate(out)
        bad = ~np.isfinite(probs).all(axis=1)
        if bad.any():  # NaN weights, or a model that diverged: no number it gives means anything
            raise TfvisionError(
                f"{self.path} gives NaN or infinite probabilities for {int(bad.sum()):,} of "
                f"{len(probs):,} images: its weights are damaged or its training diverged"
            )
        return probs

    def warm(self) -> None:
        """Runs the model once on one blank image: its function is traced (or its runtime
        allocated) now, for `predict` while the first files are still being decoded."""
        self._fn(np.zeros((1, *self.input_shape), np.uint8))

    @property
    def keras_model(self):
        return self._keras_model
