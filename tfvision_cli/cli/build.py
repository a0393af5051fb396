"""`tfvision build NAME --input-shape H,W,C --classes N --out model.keras`."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples, flag, parse_ints, parse_model_options
from tfvision_cli.cli.complete import complete_models

EXAMPLES = examples(
    "tfvision build resnet18 --input-shape 32,32,3 --classes 10",
    "tfvision build vit_tiny --out vit.keras --json",
)


@app.command("build", epilog=EXAMPLES)
def build(
    name: str = typer.Argument(
        ..., autocompletion=complete_models, help="Model name (`tfvision models list`)."
    ),
    input_shape: str = typer.Option("28,28,1", "--input-shape", help="H,W,C of the images."),
    classes: int = typer.Option(10, "--classes", min=2, help="Number of classes."),
    out: Path = typer.Option(Path("model.keras"), "--out", "-o", help="The .keras file to write."),
    force: bool = flag(False, "--force", help="Replace an existing file at --out."),
    pretrained: bool = flag(False, "--pretrained", help="ImageNet weights where offered."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE for the model."),
    as_json: Json = False,
) -> None:
    """Build an untrained model, summarise it and save it."""
    from tfvision_cli.errors import UsageError
    from tfvision_cli.models.io import save_model
    from tfvision_cli.models.registry import create_model
    from tfvision_cli.models.summary import count_params, layer_rows

    if out.suffix != ".keras":
        raise UsageError(f"--out must end in .keras, got {out}")
    if (out.exists() or out.is_symlink()) and not force:
        raise UsageError(f"{out} already exists", hint="--force replaces it")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a .keras file name")
    options = parse_model_options(model_option)
    if pretrained:
        options["pretrained"] = True
    shape = parse_ints(input_shape, 3, "--input-shape")
    model = create_model(name, shape, classes, **options)
    save_model(model, out)
    params = count_params(model)
    if as_json:
        console.emit_json(
            {
                "name": name,
                "path": str(out),
                "input_shape": list(shape),
                "classes": classes,
                "params": params,
            }
        )
        return
    if not console.is_quiet():
        console.err.print(
            console.table(name, ["layer", "type", "output", "#params"], layer_rows(model))
        )
    console.log("[green]saved[/] {out} " + f"({params:,} parameters, input uint8 {shape})", out=out)
