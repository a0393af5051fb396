"""A trained model in any form (run directory, .keras, and exported formats) behind one API.

p = load_predictor("latest")
probs = p.predict(images)      # (N, H, W, C) uint8 -> (N, classes) float32
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError


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


def load_predictor(spec: str) -> Predictor:
    """A run directory, `latest`, or a .keras file (exports: see export.py)."""
    from tfvision_cli.runs import RunDir, resolve_run

    path = Path(spec)
    if spec == "latest" or (path.is_dir() and RunDir(path).exists()):
        run = resolve_run(spec)
        if not run.model.is_file():
            raise UsageError(
                f"run {run.path} has no model.keras yet (did training finish an epoch?)"
            )
        meta = json.loads(run.classes.read_text()) if run.classes.is_file() else {}
        config = _read_config(run)
        return _keras_predictor(
            run.model,
            meta.get("class_names"),
            config.get("dataset"),
            run.path,
            config.get("data_dir"),
        )
    if path.suffix == ".keras":
        meta_path = path.with_name("metadata.json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        run_dir = path.parent if RunDir(path.parent).exists() else None
        if run_dir is not None and not meta:
            meta = json.loads(RunDir(run_dir).classes.read_text())
            meta["dataset"] = _read_config(RunDir(run_dir)).get("dataset")
        return _keras_predictor(path, meta.get("class_names"), meta.get("dataset"), run_dir, None)
    if path.suffix in (".tflite", ".onnx") or (path / "saved_model.pb").is_file():
        from tfvision_cli.export import load_exported

        return load_exported(path)
    if path.exists():
        raise UsageError(
            f"{spec} is not a model",
            hint="give a run directory (with config.yaml), `latest`, a .keras file, a SavedModel "
            "directory, a .tflite or an .onnx file",
        )
    raise UsageError(
        f"model {spec} does not exist",
        hint="give a run directory, `latest`, a .keras file or an exported model",
    )


def _read_config(run) -> dict:
    import yaml

    return yaml.safe_load(run.config.read_text()) or {}


def _keras_predictor(path: Path, class_names, dataset, run_dir, data_dir) -> Predictor:
    from tfvision_cli.models.io import load_model

    model = load_model(path)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    n = int(model.outputs[0].shape[-1])
    names = (
        list(class_names) if class_names and len(class_names) == n else [str(i) for i in range(n)]
    )

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *shape), tf.uint8)],
    )

    p = Predictor(path, "keras", names, shape, dataset, run_dir, data_dir, fn)
    p._keras_model = model
    return p
