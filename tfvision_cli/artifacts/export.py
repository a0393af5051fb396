"""`tfvision export`: SavedModel, .keras, LiteRT (.tflite) and ONNX, each proven by a parity gate.

Every export is written to a folder of its own, under a temporary name first (files.py):

    <run>/exports/<format>[-<quantize>]/    (or --out DIR)
        model.tflite | model.onnx | model.keras | saved_model.pb + variables/
        metadata.json                        classes, input, preprocessing, source, parity

The artifact is run in its own runtime (TensorFlow, LiteRT, onnxruntime) on held-out images next
to the Keras model; below the agreement threshold nothing is written and the command fails. An
existing folder at --out is replaced only if it is a tfvision export (and only with --force).
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
from tfvision_cli.artifacts.formats import FORMATS, check_options
from tfvision_cli.artifacts.loaders import load_exported
from tfvision_cli.artifacts.predictor import Predictor
from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import (
    atomic_dir,
    atomic_file,
    check_replaceable,
    is_tfvision_metadata,
    metadata_path,
    read_metadata,
)
from tfvision_cli.tf_import import quiet_stderr

DEFAULT_AGREEMENT = {"float": 0.999, "int8": 0.99}


@dataclass
class ExportResult:
    path: Path  # the artifact (file, or the SavedModel folder)
    folder: Path
    metadata: dict


def export(
    source: Predictor,
    fmt: str,
    out: Path | None = None,
    quantize: str = "none",
    verify: bool = True,
    min_agreement: float | None = None,
    examples: int = 1000,
    calibration: int = 300,
    force: bool = False,
    version: int | None = None,
) -> ExportResult:
    """Export a Keras predictor to fmt; verify parity unless verify=False. An existing export
    at out is replaced only with force; anything else there is never touched."""
    form = check_options(fmt, quantize)
    if source.keras_model is None:
        raise UsageError(
            f"export needs a trained Keras model (a run directory, latest or a "
            f".keras file), not a {source.format} file"
        )
    if min_agreement is None:
        min_agreement = DEFAULT_AGREEMENT["int8" if quantize == "int8" else "float"]
    if not 0 < min_agreement <= 1:
        raise UsageError(f"--min-agreement must be in (0, 1], got {min_agreement}")
    if out is not None and form.artifact and Path(out).suffix == Path(form.artifact).suffix:
        return _export_file(
            source, fmt, Path(out), quantize, verify, min_agreement, examples, calibration, force
        )
    folder = Path(out) if out else default_folder(source, fmt, quantize)
    if version is not None:  # TF Serving's layout: BASE/VERSION/saved_model.pb
        folder = folder / str(_check_version(fmt, version))
    _check_not_source(source, folder)
    check_replaceable(folder, "export", force)  # before minutes of work, not after

    check_images = held_out(source, examples) if verify else None
    calib = _calibration_images(source, calibration) if quantize == "int8" else None
    try:
        with atomic_dir(folder, "export", force) as tmp:
            artifact = form.write(source.keras_model, tmp, quantize, calib)
            parity = {"verified": False}
            if verify:
                exported = load_exported(artifact, class_names=source.class_names, trust=True)
                parity = _gate(source, exported, check_images, fmt, quantize, min_agreement)
            metadata = _metadata(source, fmt, quantize, artifact, tmp, parity)
            (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    except OSError as e:
        raise TfvisionError(f"cannot write {folder}: {e.strerror or e}") from None
    return ExportResult(folder / form.artifact if form.artifact else folder, folder, metadata)


def _export_file(source, fmt, out: Path, quantize, verify, min_agreement, examples, calib, force):
    """--out model.onnx: the artifact as that one file, its metadata beside it as
    model.onnx.json (one per artifact). An existing file is replaced only with --force, and only
    if its metadata says tfvision exported it; a metadata file of that name that tfvision did
    not write for this artifact is never replaced."""
    meta_path = metadata_path(out)
    _check_file_target(out, meta_path, force)
    if source.path.resolve() == out.resolve():
        raise UsageError(f"--out {out} is the model being exported; choose another")
    staging = out.parent / f".{out.name}.export"
    # (force: a staging folder a killed export left is tfvision's; anything else is refused)
    result = export(source, fmt, staging, quantize, verify, min_agreement, examples, calib, True)
    try:
        metadata = {**result.metadata, "artifact": out.name}
        with atomic_file(meta_path) as tmp:
            tmp.write_text(json.dumps(metadata, indent=2) + "\n")
        os.replace(result.path, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out, out.parent, metadata)


def _check_file_target(out: Path, meta_path: Path, force: bool) -> None:
    """out and its metadata file may be replaced only when tfvision wrote both (and --force)."""
    if meta_path.exists() or meta_path.is_symlink():
        meta = read_metadata(out) if meta_path.is_file() and not meta_path.is_symlink() else {}
        if not is_tfvision_metadata(meta, out):
            raise UsageError(
                f"{meta_path} exists and was not written by tfvision for {out.name}; "
                "refusing to replace it"
            )
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_file():
            raise UsageError(f"--out {out} exists and is not a file")
        if not is_tfvision_metadata(read_metadata(out), out):
            raise UsageError(
                f"{out} exists and was not exported by tfvision; refusing to replace it"
            )
        if not force:
            raise UsageError(f"{out} already holds an export", hint="--force replaces it")


def _check_not_source(source: Predictor, folder: Path) -> None:
    """--out must not be, or hold, the model being exported or its run."""
    resolved = folder.resolve()
    for own in (source.path, source.run_dir):
        if own is not None and (
            Path(own).resolve() == resolved or resolved in Path(own).resolve().parents
        ):
            raise UsageError(f"--out {folder} holds the model being exported; choose another")


def _gate(source, exported, check_images, fmt, quantize, min_agreement) -> dict:
    """The parity check, failed when the agreement overall is below min_agreement, or when one
    class's is significantly below it: an export that breaks on one class must not pass on the
    others' average."""
    parity = parity_check(source, exported, *check_images)
    parity["min_agreement"] = min_agreement
    name = f"{fmt}{'-' + quantize if quantize != 'none' else ''}"
    hint = "--min-agreement lowers the bar, --no-verify skips the check"
    if parity["agreement"] < min_agreement:
        raise TfvisionError(
            f"parity gate failed: the {name} export agrees with the Keras model on "
            f"{parity['agreement']:.2%} of {parity['examples']} held-out images (needs "
            f"{min_agreement:.2%}; max |Δp| {parity['max_abs_diff']:.3g}); nothing was written",
            hint=hint,
        )
    worst = _class_below(parity["per_class"], min_agreement)
    if worst is not None:
        label, c = worst
        raise TfvisionError(
            f"parity gate failed: the {name} export agrees with the Keras model on "
            f"{c['agreement']:.2%} of the {c['examples']} held-out images of class {label!r} "
            f"(needs {min_agreement:.2%} on every class; {c['disagreements']} disagreements where "
            f"{(1 - min_agreement) * c['examples']:.1f} are expected); nothing was written",
            hint=hint,
        )
    return parity


# A class fails the gate when so many of its images disagree that an export agreeing at the
# threshold would show that many less often than this (one-sided binomial test): one or two
# near-ties among a class's 100 images is noise, a class that breaks is not.
CLASS_SIGNIFICANCE = 0.01


def _class_below(per_class: dict, min_agreement: float):
    """(class, its figures) of the class whose agreement is most significantly below
    min_agreement, or None when none is."""
    from scipy.stats import binom

    worst, lowest = None, CLASS_SIGNIFICANCE
    for label, c in per_class.items():
        p = float(binom.sf(c["disagreements"] - 1, c["examples"], 1 - min_agreement))
        if c["disagreements"] and p < lowest:
            worst, lowest = (label, c), p
    return worst


def _check_version(fmt: str, version: int) -> int:
    if fmt != "savedmodel":
        raise UsageError("--version applies to --format savedmodel (TF Serving's layout)")
    if not 1 <= version < 2**63:
        raise UsageError(f"--version must be a positive integer, got {version}")
    return version


def default_folder(source: Predictor, fmt: str, quantize: str) -> Path:
    base = source.run_dir if source.run_dir else source.path.parent
    return Path(base) / "exports" / (fmt if quantize == "none" else f"{fmt}-{quantize}")


def _sample(source: Predictor, split: str, n: int):
    """(images, model labels): a stratified, seeded sample of n images of the model's own
    dataset (data/base.py's stratified_sample, streamed when the split is larger than memory),
    its classes matched to the model's by name."""
    from tfvision_cli.data.catalog import open_dataset, sample
    from tfvision_cli.data.classes import match_classes

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
    match = match_classes(
        data.info.class_names, source.class_names, what=source.dataset, model_named=source.named
    )
    images, labels = sample(data, split, n, seed=0)
    labels, keep = match.labels(labels)
    return images[keep], labels


def held_out(source: Predictor, n: int):
    """n test images (images, labels), never seen in training, every class in its share."""
    return _sample(source, "test", n)


def _calibration_images(source: Predictor, n: int) -> np.ndarray:
    """n training images for int8 calibration, every class in its share."""
    return _sample(source, "train", n)[0]


def _called_once(model):
    # Keras exports need a model that has been called once (a freshly loaded one has not).
    model(np.zeros((1, *model.inputs[0].shape[1:]), dtype=np.uint8), training=False)
    return model


def write_keras(model, folder: Path, quantize: str, calibration) -> Path:
    from tfvision_cli.models.io import save_model

    # Keras's own layers only: the artifact loads without tfvision (the parity gate checks
    # that it computes the same).
    return save_model(model, folder / FORMATS["keras"].artifact)


# The SavedModel's signatures, as TF Serving (and `tfvision serve`) show them
IMAGES_SIGNATURE = "serving_default"  # images: uint8 (N, H, W, C)
BYTES_SIGNATURE = "image_bytes"  # image_bytes: string (N,), encoded PNG/JPEG/BMP/GIF
OUTPUT = "probabilities"  # float32 (N, classes), both signatures


def write_savedmodel(model, folder: Path, quantize: str, calibration) -> Path:
    """Two signatures: serving_default takes uint8 images as the other formats do; image_bytes
    takes encoded images and decodes, converts and resizes them in the graph as `predict` does
    (data/images_tf.py), so that TF Serving itself serves raw PNG/JPEG bytes."""
    import keras

    from tfvision_cli.data.images_tf import decode_images
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    h, w, c = (int(d) for d in _called_once(model).inputs[0].shape[1:])

    def from_images(images):
        return {OUTPUT: model(images, training=False)}

    def from_bytes(image_bytes):
        return {OUTPUT: model(decode_images(image_bytes, (h, w), c), training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        IMAGES_SIGNATURE, from_images, [tf.TensorSpec((None, h, w, c), tf.uint8, name="images")]
    )
    archive.add_endpoint(
        BYTES_SIGNATURE, from_bytes, [tf.TensorSpec((None,), tf.string, name="image_bytes")]
    )
    with quiet_stderr():
        archive.write_out(str(folder), verbose=False)
    return folder


def write_onnx(model, folder: Path, quantize: str, calibration) -> Path:
    path = folder / FORMATS["onnx"].artifact
    with quiet_stderr():
        _called_once(model).export(str(path), format="onnx", verbose=False)
    return path


def write_tflite(model, folder: Path, quantize: str, calibration) -> Path:
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    _called_once(model)
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
    path = folder / FORMATS["tflite"].artifact
    with quiet_stderr():
        model.export(str(path), format="litert", verbose=False, **options)
    return path


def parity_check(reference: Predictor, exported: Predictor, images, labels) -> dict:
    """Top-1 agreement (overall and per true class), max |Δ probability| and both accuracies
    on the same images."""
    p_ref = reference.predict(images)
    p_exp = exported.predict(images)
    top_ref, top_exp = p_ref.argmax(1), p_exp.argmax(1)
    agree = top_ref == top_exp
    per_class = {
        reference.class_names[c]: {
            "examples": int(np.sum(labels == c)),
            "agreement": float(np.mean(agree[labels == c])),
            "disagreements": int(np.sum(~agree[labels == c])),
        }
        for c in np.unique(labels)
    }
    return {
        "verified": True,
        "examples": int(len(images)),
        "agreement": float(np.mean(agree)) if len(images) else 1.0,
        "per_class": per_class,
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
            "meaning": "class probabilities (softmax)"
            + (
                f", calibrated (temperature {source.calibration['temperature']:.4g} inside)"
                if source.calibration
                else ""
            ),
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
    } | ({"calibration": source.calibration} if source.calibration else {})


def _describe_layer(layer) -> str:
    config = layer.get_config()
    if type(layer).__name__ == "Rescaling":
        return f"rescale x*{config['scale']:.6g}+{config['offset']:.6g}"
    if type(layer).__name__ == "Resizing":
        return f"resize to {config['height']}x{config['width']} ({config['interpolation']})"
    return "grey to RGB (repeat the channel)"
