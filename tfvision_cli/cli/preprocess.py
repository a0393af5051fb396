"""`tfvision preprocess SRC --out DIR`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples, flag, parse_image_size

EXAMPLES = examples(
    "tfvision preprocess ./raw_photos --out ./photos --image-size 64",
    "tfvision preprocess photos.zip --out ./photos --json",
)


@app.command("preprocess", epilog=EXAMPLES)
def preprocess(
    src: Path = typer.Argument(
        ..., help="Folder of class folders SRC/<class_name>/<images>, or a .zip/.tar[.gz] of one."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the prepared dataset."),
    image_size: str | None = typer.Option(
        None, "--image-size", help="H or H,W (default: the most common size in SRC)."
    ),
    channels: int | None = typer.Option(
        None, "--channels", min=1, max=3, help="1 or 3 (default: 1 if every image is grey)."
    ),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Share held out for validation."
    ),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share held out for testing."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified split."),
    overwrite: bool = flag(False, "--overwrite", help="Replace OUT if it exists."),
    as_json: Json = False,
) -> None:
    """Decode, resize, split and store a folder of images as a TFDS dataset that trains fast."""
    from tfvision_cli.data.preprocess import preprocess as do_preprocess
    from tfvision_cli.errors import UsageError

    if channels == 2:
        raise UsageError("--channels must be 1 or 3")
    with console.progress("decoding images") as update:
        result = do_preprocess(
            src,
            out,
            parse_image_size(image_size),
            channels,
            val_fraction,
            test_fraction,
            seed,
            overwrite,
            on_progress=update,
        )
    for failure in result.failures:
        console.warn(f"skipped {failure}")
    if as_json:
        console.emit_json(result.to_dict())
        return
    splits = ", ".join(f"{k} {v:,}" for k, v in result.splits.items())
    console.log(
        "[green]wrote[/] {out}: "
        f"{len(result.class_names)} classes, {'x'.join(map(str, result.image_shape))}, {splits}"
        + (f"; {len(result.failures)} unreadable files skipped" if result.failures else ""),
        out=result.out,
    )
