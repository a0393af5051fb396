"""Loading a trained model in any form behind the Predictor API: a run directory, `latest`, a
.keras file, an export folder, a SavedModel, .tflite or .onnx. Each format's loader is a row of
formats.FORMATS (its loader names a function here).

p = load_predictor("latest")
probs = p.predict(images)      # (N, H, W, C) uint8 -> (N, classes) float32
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tfvision_cli.artifacts.formats import FORMATS, artifact_suffixes, described
from tfvision_cli.artifacts.predictor import Predictor
from tfvision_cli.data.classes import index_names
from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import read_metadata
from tfvision_cli.runs import RunDir, by_name, close_run_names, resolve_run


def load_predictor(spec: str, trust: bool = False) -> Predictor:
    """A run directory, `latest`, a .keras file, or an export (its folder, or the model file).

    trust: run a SavedModel without checking its ops first (model_scan.py).
    """
    path = Path(spec)
    if spec == "latest" or (path.is_dir() and RunDir(path).exists()):
        return _run_predictor(resolve_run(spec))
    if not path.exists() and by_name(spec) is not None:  # a run's name, as `runs list` shows
        return _run_predictor(resolve_run(spec))
    if path.suffix == ".keras" and path.is_file():
        meta = read_metadata(path)
        run_dir = path.parent if RunDir(path.parent).is_ours() else None
        if run_dir is not None and not meta:
            meta = _read_json(RunDir(run_dir).classes)
            meta["dataset"] = _read_config(RunDir(run_dir)).get("dataset")
        p = keras_predictor(path, meta.get("class_names"), meta.get("dataset"), run_dir, None)
        if run_dir is not None and path.resolve() == RunDir(run_dir).model.resolve():
            return calibrated(p, RunDir(run_dir))  # the run's own model: as the run
        p.calibration = meta.get("calibration")
        return p
    if _is_export(path):
        return load_exported(path, trust=trust)
    version = serving_version(path)
    if version is not None:  # a TF Serving base folder: its highest version
        return load_exported(path / str(version), trust=trust)
    if path.exists():
        raise UsageError(
            f"{spec} is not a model",
            hint=f"give a run directory (with run.json), `latest`, an export folder, {described()}",
        )
    raise UsageError(
        f"model {spec} does not exist.{close_run_names(spec)}",
        hint="give a run directory or name, `latest`, a .keras file or an exported model",
    )


def serving_version(path: Path) -> int | None:
    """The highest numbered version in a TF Serving base folder (BASE/N/saved_model.pb), or
    None when path is no such folder."""
    if not path.is_dir():
        return None
    versions = [
        int(p.name)
        for p in path.iterdir()
        if p.name.isdigit() and not p.name.startswith("0") and (p / "saved_model.pb").is_file()
    ]
    return max(versions, default=None)


def _is_export(path: Path) -> bool:
    if path.is_dir():
        return (path / "saved_model.pb").is_file() or (path / "metadata.json").is_file()
    return path.is_file() and path.suffix in artifact_suffixes()


def _run_predictor(run: RunDir) -> Predictor:
    if not run.model.is_file():
        raise UsageError(f"run {run.path} has no model.keras yet (did training finish an epoch?)")
    meta = _read_json(run.classes)
    config = _read_config(run)
    predictor = keras_predictor(
        run.model, meta.get("class_names"), config.get("dataset"), run.path, config.get("data_dir")
    )
    return calibrated(predictor, run)


def calibrated(predictor: Predictor, run: RunDir) -> Predictor:
    """The run's calibration (`tfvision calibrate`), if it has one, set inside its Keras model:
    every consumer (evaluate, predict, compare, explain, serve, every export) sees calibrated
    probabilities."""
    from tfvision_cli.models.io import scale_logits

    record = read_calibration(run)
    if record is not None:
        scale_logits(predictor.keras_model, 1.0 / record["temperature"])
        predictor.calibration = record
    return predictor


def read_calibration(run: RunDir) -> dict | None:
    """A run's calibration.json, or None; a file that is not tfvision's record is an error
    (it would silently change every probability)."""
    import math

    if not run.calibration.is_file():
        return None
    record = _read_json(run.calibration)
    t = record.get("temperature")
    if (
        record.get("method") != "temperature"
        or not isinstance(t, float | int)
        or not math.isfinite(t)
        or t <= 0
    ):
        raise TfvisionError(
            f"{run.calibration} is not a calibration tfvision wrote",
            hint="remove it, or write it again with tfvision calibrate",
        )
    return record


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_config(run) -> dict:
    from tfvision_cli.config import read_yaml

    return read_yaml(run.config) if run.config.is_file() else {}


def keras_predictor(path: Path, class_names, dataset, run_dir, data_dir) -> Predictor:
    """A .keras file (loaded with safe_mode) behind a traced uint8 -> probabilities function."""
    from tfvision_cli.models.io import load_model

    model = load_model(path)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    n = int(model.outputs[0].shape[-1])
    named = bool(class_names) and len(class_names) == n
    names = list(class_names) if named else index_names(n)

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, *shape), tf.uint8)],
    )

    p = Predictor(path, "keras", names, shape, dataset, run_dir, data_dir, fn, named=named)
    p._keras_model = model
    return p


def load_exported(
    path: Path, class_names: list[str] | None = None, trust: bool = False
) -> Predictor:
    """An exported model in its own runtime: the export folder (with metadata.json), or the
    SavedModel folder, .keras, .tflite or .onnx file itself."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = _read_json(folder / "metadata.json")
    if path.is_file():
        meta = read_metadata(path)
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        artifact = meta.get("artifact")
        if not isinstance(artifact, str) or artifact in ("", ".") or "/" in artifact:
            raise UsageError(f"{path} holds no exported model")
        path = path / artifact
    names = class_names or meta.get("class_names")
    fmt = (
        "savedmodel"
        if (path / "saved_model.pb").is_file()
        else artifact_suffixes().get(path.suffix)
    )
    if fmt is None or fmt not in FORMATS:
        raise UsageError(f"{path} is not an exported model (give {described()})")
    predictor = FORMATS[fmt].load(path, names, meta, trust)
    predictor.calibration = meta.get("calibration")  # baked into the export's graph
    return predictor


def _savedmodel_fn(path: Path, trust: bool):
    from tfvision_cli.artifacts.scan import check_savedmodel
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    if not trust:
        check_savedmodel(path)  # before anything in it runs
    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except (OSError, KeyError, ValueError) as e:
        raise TfvisionError(f"cannot load SavedModel {path}: {str(e).splitlines()[0]}") from None
    spec = list(signature.structured_input_signature[1].values())[0]
    shape = tuple(int(d) for d in spec.shape[1:])
    out_spec = list(signature.structured_outputs.values())[0]
    n = int(out_spec.shape[-1])

    def fn(batch):
        result = signature(tf.constant(batch, dtype=spec.dtype))
        return list(result.values())[0].numpy()

    fn.keepalive = loaded  # the signature needs its object alive
    return fn, shape, n


def _tflite_fn(path: Path, trust: bool):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise TfvisionError(
            "running .tflite models needs ai-edge-litert", hint="pip install ai-edge-litert"
        ) from None
    from tfvision_cli.tf_import import quiet_stderr

    try:
        with quiet_stderr():  # LiteRT announces its XNNPACK delegate on stderr
            interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    except (ValueError, RuntimeError) as e:
        raise TfvisionError(f"cannot load {path}: {str(e).splitlines()[0]}") from None
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"][1:])
    n = int(out["shape"][-1])
    state = {"batch": None}

    def fn(batch):
        batch = np.asarray(batch)
        if state["batch"] != len(batch):
            interpreter.resize_tensor_input(inp["index"], [len(batch), *shape])
            with quiet_stderr():
                interpreter.allocate_tensors()
            state["batch"] = len(batch)
        interpreter.set_tensor(inp["index"], batch.astype(inp["dtype"]))
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"])
        scale, zero = out["quantization"]
        if scale:
            result = (result.astype(np.float32) - zero) * scale
        return result.astype(np.float32)

    return fn, shape, n


def _onnx_fn(path: Path, trust: bool):
    try:
        import onnxruntime as ort
    except ImportError:
        raise TfvisionError(
            "running .onnx models needs onnxruntime", hint="pip install onnxruntime"
        ) from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise TfvisionError(f"cannot load {path}: {str(e).splitlines()[0]}") from None
    inp = session.get_inputs()[0]
    shape = tuple(int(d) for d in inp.shape[1:])
    n = int(session.get_outputs()[0].shape[-1])

    def fn(batch):
        return session.run(None, {inp.name: np.asarray(batch, dtype=np.uint8)})[0]

    return fn, shape, n


def _runtime_predictor(path: Path, fmt: str, names, meta: dict, loaded) -> Predictor:
    fn, shape, n = loaded
    named = bool(names) and len(names) == n
    names = list(names) if named else index_names(n)
    return Predictor(path, fmt, names, shape, meta.get("dataset"), None, None, fn, named=named)


# the loaders of formats.FORMATS: (path, class names, metadata, trust) -> Predictor
def load_savedmodel(path: Path, names, meta: dict, trust: bool) -> Predictor:
    return _runtime_predictor(path, "savedmodel", names, meta, _savedmodel_fn(path, trust))


def load_tflite(path: Path, names, meta: dict, trust: bool) -> Predictor:
    return _runtime_predictor(path, "tflite", names, meta, _tflite_fn(path, trust))


def load_onnx(path: Path, names, meta: dict, trust: bool) -> Predictor:
    return _runtime_predictor(path, "onnx", names, meta, _onnx_fn(path, trust))


def load_keras(path: Path, names, meta: dict, trust: bool) -> Predictor:
    """A .keras export keeps its Keras model (explain and robustness differentiate it)."""
    return keras_predictor(path, names, meta.get("dataset"), None, None)
