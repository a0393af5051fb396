"""The one table of export formats (as Ultralytics' `export_formats()`): export, the loaders,
benchmark and the CLI's help and completion all read it. Adding a format is a row here, a
writer in export.py (WRITERS) and a loader in loaders.py (LOADERS); a test checks all three."""

from __future__ import annotations

from dataclasses import dataclass

from tfvision_cli.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class Format:
    name: str
    artifact: str | None  # the file inside the export folder; None: the folder itself
    runtime: str  # what runs it
    quantizations: tuple[str, ...] = ("none",)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("savedmodel", None, "TensorFlow"),
        Format("keras", "model.keras", "Keras"),
        Format("tflite", "model.tflite", "LiteRT", ("none", "float16", "dynamic", "int8")),
        Format("onnx", "model.onnx", "onnxruntime"),
    )
}
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


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
    if quantize not in QUANTIZATIONS:
        raise UsageError(
            f"unknown quantization {quantize!r}.{did_you_mean(quantize, QUANTIZATIONS)} "
            f"Choose from: {', '.join(QUANTIZATIONS)}"
        )
    if quantize not in f.quantizations:
        applies = [g.name for g in FORMATS.values() if quantize in g.quantizations]
        raise UsageError(f"--quantize {quantize} applies to --format {', '.join(applies)} only")
    return f


def artifact_suffixes() -> dict[str, str]:
    """File ending -> format name, for the formats that are one file."""
    return {f".{f.artifact.rsplit('.', 1)[1]}": f.name for f in FORMATS.values() if f.artifact}
