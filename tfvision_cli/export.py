"""`tfvision export`: SavedModel, .keras, LiteRT (.tflite) and ONNX, each proven by a parity gate.

Every export is written to a folder of its own under a temporary name:

    <run>/exports/<format>[-<quantize>]/    (or --out DIR)
        model.tflite | model.onnx | model.keras | saved_model.pb + variables/
        metadata.json                        classes, input, preprocessing, source, parity

The artifact is run in its own runtime (TensorFlow, LiteRT, onnxruntime) on held-out images next
to the Keras model; below the agreement threshold the folder is deleted and the command fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli import __version__
from tfvision_cli.errors import TfvisionError, UsageError, did_you_mean
from tfvision_cli.predictor import Predictor
from tfvision_cli.runs import remove_stale_temps, replace_dir

FORMATS = ("savedmodel", "keras", "tflite", "onnx")
QUANTIZE = ("none", "float16", "dynamic", "int8")
ARTIFACT = {"keras": "model.keras", "tflite": "model.tflite", "onnx": "model.onnx"}
DEFAULT_AGREEMENT = {"float": 0.999, "int8": 0.99}


@dataclass
class ExportResult:
    path: Path  # the artifact (file, or the SavedModel folder)
    folder: Path
    metadata: dict


def check_options(fmt: str, quantize: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(
            f"unknown format {fmt!r}.{did_you_mean(fmt, FORMATS)} Formats: {', '.join(FORMATS)}"
        )
    if quantize not in QUANTIZE:
        raise UsageError(
            f"unknown quantization {quantize!r}.{did_you_mean(quantize, QUANTIZE)} "
            f"Choose from: {', '.join(QUANTIZE)}"
        )
    if quantize != "none" and fmt != "tflite":
        raise UsageError(f"--quantize {quantize} applies to --format tflite only")


def export(
    source: Predictor,
    fmt: str,
    out: Path | None = None,
    quantize: str = "none",
    verify: bool = True,
    min_agreement: float | None = None,
    examples: int = 1000,
    calibration: int = 300,
    overwrite: bool = True,
) -> ExportResult:
    """Export a Keras predictor to fmt; verify parity unless verify=False."""
    check_options(fmt, quantize)
    if source.keras_model is None:
        raise UsageError(
            f"export needs a trained Keras model (a run directory, latest or a "
            f".keras file), not a {source.format} file"
        )
    if min_agreement is None:
        min_agreement = DEFAULT_AGREEMENT["int8" if quantize == "int8" else "float"]
    if not 0 < min_agreement <= 1:
        raise UsageError(f"--min-agreement must be in (0, 1], got {min_agreement}")
    folder = Path(out) if out else default_folder(source, fmt, quantize)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file; give a folder for the export")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise UsageError(f"{folder} exists", hint="remove it or pass another --out")

    check_images = held_out(source, examples) if verify else None
    calib = _calibration_images(source, calibration) if quantize == "int8" else None
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder.parent)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        artifact = write_artifact(source.keras_model, fmt, tmp, quantize, calib)
        parity = {"verified": False}
        if verify:
            exported = load_exported(
                artifact if fmt != "savedmodel" else tmp, class_names=source.class_names
            )
            parity = parity_check(source, exported, *check_images)
            parity["min_agreement"] = min_agreement
            if parity["agreement"] < min_agreement:
                raise TfvisionError(
                    f"parity gate failed: the {fmt}{'-' + quantize if quantize != 'none' else ''}"
                    f" export agrees with the Keras model on {parity['agreement']:.2%} of "
                    f"{parity['examples']} held-out images (needs {min_agreement:.2%}; max "
                    f"|Δp| {parity['max_abs_diff']:.3g}); nothing was written",
                    hint="--min-agreement lowers the bar, --no-verify skips the check",
                )
        metadata = _metadata(source, fmt, quantize, artifact, tmp, parity)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        replace_dir(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TfvisionError(f"cannot write {folder}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    path = folder if fmt == "savedmodel" else folder / ARTIFACT[fmt]
    return ExportResult(path, folder, metadata)


def default_folder(source: Predictor, fmt: str, quantize: str) -> Path:
    base = source.run_dir if source.run_dir else source.path.parent
    return Path(base) / "exports" / (fmt if quantize == "none" else f"{fmt}-{quantize}")


def _dataset_split(source: Predictor, split: str):
    from tfvision_cli.data.catalog import open_dataset

    if not source.dataset:
        raise UsageError(
            "the model does not say which dataset it was trained on, so there are "
            "no held-out images to verify with",
            hint="--no-verify skips the check",
        )
    h, w, _ = source.input_shape
    data = open_dataset(source.dataset, data_dir=source.data_dir, image_size=(h, w))
    if not data.has_split(split):
        split = "validation" if data.has_split("validation") else "train"
    return data.arrays(split)


def held_out(source: Predictor, n: int):
    """The first n test images (images, labels): never seen in training."""
    images, labels = _dataset_split(source, "test")
    return images[:n], labels[:n]


def _calibration_images(source: Predictor, n: int) -> np.ndarray:
    """A seeded sample of training images for int8 calibration."""
    images, _ = _dataset_split(source, "train")
    idx = np.random.default_rng(0).choice(len(images), min(n, len(images)), replace=False)
    return images[np.sort(idx)]


def write_artifact(
    model, fmt: str, folder: Path, quantize: str = "none", calibration: np.ndarray | None = None
) -> Path:
    """Write the artifact for fmt into folder with Keras's own exporters; return its path."""
    from tfvision_cli.tf_import import quiet_stderr
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    # Keras exports need a model that has been called once (a freshly loaded one has not).
    model(np.zeros((1, *model.inputs[0].shape[1:]), dtype=np.uint8), training=False)
    if fmt == "keras":
        from tfvision_cli.models.io import save_model

        return save_model(model, folder / ARTIFACT["keras"])
    if fmt == "savedmodel":
        with quiet_stderr():
            model.export(str(folder), format="tf_saved_model", verbose=False)
        return folder
    if fmt == "onnx":
        with quiet_stderr():
            model.export(str(folder / ARTIFACT["onnx"]), format="onnx", verbose=False)
        return folder / ARTIFACT["onnx"]
    options: dict = {}
    if quantize == "float16":
        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {"supported_types": [tf.float16]},
        }
    elif quantize == "dynamic":
        options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    elif quantize == "int8":

        def representative():
            for image in calibration:
                yield [image[None]]

        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": representative,
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
        }
    with quiet_stderr():
        model.export(str(folder / ARTIFACT["tflite"]), format="litert", verbose=False, **options)
    return folder / ARTIFACT["tflite"]


def parity_check(reference: Predictor, exported: Predictor, images, labels) -> dict:
    """Top-1 agreement, max |Δ probability| and both accuracies on the same images."""
    p_ref = reference.predict(images)
    p_exp = exported.predict(images)
    top_ref, top_exp = p_ref.argmax(1), p_exp.argmax(1)
    return {
        "verified": True,
        "examples": int(len(images)),
        "agreement": float(np.mean(top_ref == top_exp)),
        "max_abs_diff": float(np.max(np.abs(p_ref - p_exp))) if len(images) else 0.0,
        "keras_accuracy": float(np.mean(top_ref == labels)),
        "export_accuracy": float(np.mean(top_exp == labels)),
    }


def _metadata(source: Predictor, fmt, quantize, artifact: Path, folder: Path, parity) -> dict:
    model = source.keras_model
    stem = [
        layer
        for layer in model.layers[1:4]
        if type(layer).__name__ in ("Rescaling", "Resizing", "Concatenate")
    ]
    size = (
        sum(f.stat().st_size for f in artifact.rglob("*") if f.is_file())
        if artifact.is_dir()
        else artifact.stat().st_size
    )
    return {
        "format": fmt,
        "artifact": artifact.relative_to(folder).as_posix() if artifact != folder else ".",
        "size_bytes": size,
        "class_names": source.class_names,
        "input": {
            "shape": [None, *source.input_shape],
            "dtype": "uint8",
            "layout": "NHWC",
            "range": "0-255",
        },
        "output": {
            "shape": [None, len(source.class_names)],
            "dtype": "float32",
            "meaning": "class probabilities (softmax)",
        },
        "preprocessing_inside": [_describe_layer(layer) for layer in stem],
        "source": {
            "model": str(source.path),
            "run_dir": str(source.run_dir or ""),
            "dataset": source.dataset,
        },
        "dataset": source.dataset,
        "tfvision_version": __version__,
        "options": {"format": fmt, "quantize": quantize},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parity": parity,
    }


def _describe_layer(layer) -> str:
    config = layer.get_config()
    if type(layer).__name__ == "Rescaling":
        return f"rescale x*{config['scale']:.6g}+{config['offset']:.6g}"
    if type(layer).__name__ == "Resizing":
        return f"resize to {config['height']}x{config['width']} ({config['interpolation']})"
    return "grey to RGB (repeat the channel)"


def load_exported(path: Path, class_names: list[str] | None = None) -> Predictor:
    """An exported model in its own runtime: a SavedModel folder, .tflite, .onnx, or the
    export folder holding one of them with metadata.json."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_file = folder / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        if meta.get("artifact") and meta["artifact"] != ".":
            path = path / meta["artifact"]
        else:
            raise UsageError(f"{path} holds no exported model")
    names = class_names or meta.get("class_names")
    if path.suffix == ".keras":
        from tfvision_cli.predictor import _keras_predictor

        return _keras_predictor(path, names, meta.get("dataset"), None, None)
    if (path / "saved_model.pb").is_file():
        fn, shape, n = _savedmodel_fn(path)
        fmt = "savedmodel"
    elif path.suffix == ".tflite":
        fn, shape, n = _tflite_fn(path)
        fmt = "tflite"
    elif path.suffix == ".onnx":
        fn, shape, n = _onnx_fn(path)
        fmt = "onnx"
    else:
        raise UsageError(f"{path} is not a SavedModel, .tflite or .onnx model")
    names = list(names) if names and len(names) == n else [str(i) for i in range(n)]
    return Predictor(path, fmt, names, shape, meta.get("dataset"), None, None, fn)


def _savedmodel_fn(path: Path):
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
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


def _tflite_fn(path: Path):
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


def _onnx_fn(path: Path):
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
