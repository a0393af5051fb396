"""`tfvision predict MODEL INPUT...`."""

from __future__ import annotations

import os
import sys
import time

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import (
    MIN_CONFIDENCE,
    PREDICTION_SET,
    TRUST_MODEL,
    Json,
    examples,
    model_argument,
)

EXAMPLES = examples(
    "tfvision predict latest digit.png",
    "find photos -name '*.jpg' | tfvision predict flowers - --json | jq .class_name",
)


# more files than this (or a folder, or stdin) are decoded by processes, not threads
MANY_FILES = 64


@app.command("predict", epilog=EXAMPLES)
def predict(
    model: str = model_argument(..., help="Run directory, latest, .keras or an export."),
    inputs: list[str] = typer.Argument(
        ..., help="Image files, folders (recursive), or - for paths on stdin, one per line."
    ),
    top_k: int = typer.Option(5, "--top-k", min=1, max=1000, help="Classes listed per image."),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        max=65_536,
        help="Images per batch [default: from the input size, 512 for 28x28x1, 64 from 64x64x3].",
        show_default=False,
    ),
    prediction_set: float | None = PREDICTION_SET,
    min_confidence: float | None = MIN_CONFIDENCE,
    trust_model: bool = TRUST_MODEL,
    as_json: Json = False,
) -> None:
    """Classify images: NDJSON on stdout (a table on a terminal); exit 1 if any input failed."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.serving.predict import (
        Decisions,
        auto_batch_size,
        decoders,
        iter_paths,
        predict_paths,
        summarize_notes,
    )

    if trust_model:
        console.warn("--trust-model: a SavedModel's ops are not checked before they run")
    # folders and stdin hold many files: decoding processes, started before the model loads
    many = len(inputs) > MANY_FILES or any(i == "-" or os.path.isdir(i) for i in inputs)
    with decoders(many) as pool:
        predictor = load_predictor(model, trust=trust_model)
        decisions = None
        if prediction_set is not None or min_confidence is not None:
            decisions = Decisions(predictor, prediction_set, min_confidence)
        ndjson = as_json or not console.stdout_is_terminal()
        batch_size = batch_size or auto_batch_size(predictor.input_shape)
        console.log(
            "model: {path} "
            + f"({predictor.format}, input {_shape(predictor)}, batches of {batch_size})",
            path=predictor.path,
        )
        paths = iter_paths(inputs, sys.stdin, pauses=True)
        results = predict_paths(predictor, paths, batch_size, top_k, decisions, pool)
        start, done, failed, rows, noted = time.perf_counter(), 0, 0, [], []
        for r in results:
            done += 1
            failed += "error" in r
            if r.get("notes"):
                noted.append(r["notes"])
            if ndjson:
                console.emit_ndjson(r)
            else:
                rows.append(
                    [
                        r["path"],
                        _class_cell(r),
                        f"{r['confidence']:.4f}" if "confidence" in r else "",
                        r.get("error") or _next_and_notes(r),
                    ]
                )
        seconds = time.perf_counter() - start
        if rows:
            shown, folder = console.short_paths([row[0] for row in rows])
            for row, path in zip(rows, shown, strict=True):
                row[0] = path
            title = "Predictions" + (f" (paths under {folder})" if folder else "")
            columns = ["path", "class", "#confidence", "next / error / notes"]
            console.print_table(console.table(title, columns, rows))
        summary = summarize_notes(noted, done - failed)
        if summary:
            console.warn(summary)
        if done == 0:
            console.warn("no images found in the inputs")
        console.log(
            f"{done - failed:,} predicted, {failed:,} failed in {seconds:.2f} s "
            f"({(done - failed) / seconds if seconds > 0 else 0:,.0f} images/s)"
        )
        if failed:
            raise typer.Exit(1)


def _class_cell(r: dict) -> str:
    if r.get("abstained"):
        return "(abstained)"
    shown = r.get("class_name") or ""
    if "prediction_set_names" in r:
        shown += f" {{{', '.join(r['prediction_set_names'])}}}"
    return shown


def _shape(predictor) -> str:
    h, w, c = predictor.input_shape
    return f"{h}x{w}x{c}, {len(predictor.class_names)} classes"


def _next_and_notes(r: dict) -> str:
    text = ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in r["top_k"][1:])
    return text + "".join(f"; {note}" for note in r.get("notes", []))
