"""`tfvision models list|show`."""

from __future__ import annotations

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples, parse_ints
from tfvision_cli.cli.complete import complete_models

group = typer.Typer(help="The model registry.", no_args_is_help=True)

INPUT_SHAPE = typer.Option("28,28,1", "--input-shape", help="H,W,C of the images.")
CLASSES = typer.Option(10, "--classes", min=2, help="Number of classes.")


@group.command(
    "list", epilog=examples("tfvision models list", "tfvision models list --family cnn --json")
)
def list_cmd(
    pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'res*'."),
    input_shape: str = INPUT_SHAPE,
    classes: int = CLASSES,
    as_json: Json = False,
) -> None:
    """Registered models with family, parameters at the given input and a description."""
    from tfvision_cli.models.registry import create_model, get_entry, list_models
    from tfvision_cli.models.summary import count_params
    from tfvision_cli.tf_import import tf

    shape = parse_ints(input_shape, 3, "--input-shape")
    tf()
    rows = []
    for name in list_models(pattern):
        entry = get_entry(name)
        params = count_params(create_model(name, shape, classes))
        rows.append(
            {
                "name": name,
                "family": entry.family,
                "params": params,
                "description": entry.description,
            }
        )
    if as_json:
        console.emit_json(rows)
        return
    console.print_table(
        console.table(
            f"Models (params at {input_shape}, {classes} classes)",
            ["name", "family", "#params", "description"],
            [[r["name"], r["family"], f"{r['params']:,}", r["description"]] for r in rows],
        )
    )


@group.command(
    epilog=examples(
        "tfvision models show resnet18",
        "tfvision models show vit_tiny --input-shape 32,32,3 --json",
    )
)
def show(
    name: str = typer.Argument(..., autocompletion=complete_models, help="Model name."),
    input_shape: str = INPUT_SHAPE,
    classes: int = CLASSES,
    as_json: Json = False,
) -> None:
    """Layer summary, parameters and FLOPs per image of one model."""
    from tfvision_cli.models.registry import create_model, get_entry
    from tfvision_cli.models.summary import count_params, flops_per_image, layer_rows

    shape = parse_ints(input_shape, 3, "--input-shape")
    entry = get_entry(name)
    model = create_model(name, shape, classes)
    params, flops = count_params(model), flops_per_image(model)
    if as_json:
        console.emit_json(
            {
                "name": name,
                "family": entry.family,
                "input_shape": list(shape),
                "classes": classes,
                "params": params,
                "flops_per_image": flops,
                "layers": [
                    dict(zip(["name", "type", "output_shape", "params"], r, strict=True))
                    for r in layer_rows(model)
                ],
            }
        )
        return
    console.print_table(
        console.table(
            f"{name}: {entry.description}",
            ["layer", "type", "output", "#params"],
            layer_rows(model),
        )
    )
    flops_text = f"{flops / 1e6:,.2f} MFLOPs" if flops else "unknown"
    console.out.print(f"params: {params:,}   FLOPs per image: {flops_text}   input: uint8 {shape}")


app.add_typer(group, name="models")
