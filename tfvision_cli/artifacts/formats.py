"""The one table of export formats (as Ultralytics' `export_formats()`): export, the loaders,
benchmark and the CLI's help, choices and errors all read it. Adding a format is one row:

    Format(name, artifact, quantizations, writer, loader)

writer and loader are "module:function" names, imported only when the format is used (so that
`tfvision --help` imports no TensorFlow), or the functions themselves:

    writer(model, folder, quantize, calibration images) -> the artifact's path
    loader(path, class names or None, metadata dict, trust) -> Predictor
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from tfvision_cli.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class Format:
    name: str
    artifact: str | None  # the file inside the export folder; None: the folder itself
    quantizations: tuple[str, ...]
    writer: str | Callable
    loader: str | Callable

    def write(self, model, folder, quantize: str, calibration):
        return _resolve(self.writer)(model, folder, quantize, calibration)

    def load(self, path, class_names, metadata: dict, trust: bool):
        return _resolve(self.loader)(path, class_names, metadata, trust)


def _resolve(target: str | Callable) -> Callable:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


_EXPORT = "tfvision_cli.artifacts.export"
_LOADERS = "tfvision_cli.artifacts.loaders"
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "savedmodel",
            None,
            ("none",),
            f"{_EXPORT}:write_savedmodel",
            f"{_LOADERS}:load_savedmodel",
        ),
        Format(
            "keras", "model.keras", ("none",), f"{_EXPORT}:write_keras", f"{_LOADERS}:load_keras"
        ),
        Format(
            "tflite",
            "model.tflite",
            ("none", "float16", "dynamic", "int8"),
            f"{_EXPORT}:write_tflite",
            f"{_LOADERS}:load_tflite",
        ),
        Format("onnx", "model.onnx", ("none",), f"{_EXPORT}:write_onnx", f"{_LOADERS}:load_onnx"),
    )
}


def quantizations() -> tuple[str, ...]:
    """Every quantization some format offers, in the table's order ("none" first)."""
    return tuple(dict.fromkeys(q for f in FORMATS.values() for q in f.quantizations))


def variants() -> list[str]:
    """Every format and quantization as benchmark names them: tflite, tflite-int8, ..."""
    return [
        f.name if q == "none" else f"{f.name}-{q}"
        for f in FORMATS.values()
        for q in f.quantizations
    ]


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise UsageError(
            f"unknown format {name!r}.{did_you_mean(name, FORMATS)} Formats: {', '.join(FORMATS)}"
        )
    return FORMATS[name]


def check_options(fmt: str, quantize: str) -> Format:
    f = get_format(fmt)
    known = quantizations()
    if quantize not in known:
        raise UsageError(
            f"unknown quantization {quantize!r}.{did_you_mean(quantize, known)} "
            f"Choose from: {', '.join(known)}"
        )
    if quantize not in f.quantizations:
        applies = [g.name for g in FORMATS.values() if quantize in g.quantizations]
        raise UsageError(f"--quantize {quantize} applies to --format {', '.join(applies)} only")
    return f


def artifact_suffixes() -> dict[str, str]:
    """File ending -> format name, for the formats that are one file."""
    return {f".{f.artifact.rsplit('.', 1)[1]}": f.name for f in FORMATS.values() if f.artifact}


def described() -> str:
    """'a SavedModel folder, a .keras, .tflite or .onnx file': for error messages."""
    files = [f".{f.artifact.rsplit('.', 1)[1]}" for f in FORMATS.values() if f.artifact]
    folders = [f.name for f in FORMATS.values() if not f.artifact]
    names = {"savedmodel": "SavedModel"}
    text = " or ".join(f"a {names.get(n, n)} folder" for n in folders)
    if files:
        listed = ", ".join(files[:-1]) + (" or " if len(files) > 1 else "") + files[-1]
        text += f"{', ' if text else ''}a {listed} file"
    return text
