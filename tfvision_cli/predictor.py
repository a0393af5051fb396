"""Predictor: a trained model in any form (run, .keras, an export) behind one API; loaders.py
makes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images of the model's input shape."""
        out = [
            np.asarray(self._fn(images[i : i + batch_size]), dtype=np.float32)
            for i in range(0, len(images), batch_size)
        ]
        if not out:
            return np.zeros((0, len(self.class_names)), np.float32)
        return np.concatenate(out)

    @property
    def keras_model(self):
        return self._keras_model
