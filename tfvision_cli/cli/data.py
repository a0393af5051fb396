"""`tfvision data list|download|info|preview`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples
from tfvision_cli.cli.complete import complete_datasets
from tfvision_cli.cli.options import takes_config

group = typer.Typer(help="Find, download, inspect and preview datasets.", no_args_is_help=True)

DATA_DIR = typer.Option(
    None, "--data-dir", help="TFDS data directory (default: $TFDS_DATA_DIR, else TFDS's default)."
)


def _prepared(name: str, data_dir: str | None) -> bool:
    root = Path(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()
    return any((root / name).glob("*/dataset_info.json"))


@group.command("list", epilog=examples("tfvision data list", "tfvision data list --json"))
def list_datasets(data_dir: str | None = DATA_DIR, as_json: Json = False) -> None:
    """The datasets tfvision knows (any TFDS image-classification name and folders work too)."""
    from tfvision_cli.data.catalog import KNOWN_TFDS, builtin_names, open_dataset

    rows = []
    for name in builtin_names():  # built-in datasets are small and local: ask them
        info = open_dataset(name).info
        rows.append(
            {
                "name": name,
                "source": "builtin",
                "image_shape": list(info.image_shape),
                "num_classes": info.num_classes,
                "splits": info.splits,
                "available": True,
                "description": info.description,
            }
        )
    for name, shape, classes, splits, description in KNOWN_TFDS:
        rows.append(
            {
                "name": name,
                "source": "tfds",
                "image_shape": list(shape),
                "num_classes": classes,
                "splits": splits,
                "available": _prepared(name, data_dir),
                "description": description,
            }
        )
    rows.append(
        {
            "name": "DIR",
            "source": "folder",
            "image_shape": None,
            "num_classes": None,
            "splits": None,
            "available": None,
            "description": "DIR/<class>/<images>, or a folder written by `tfvision preprocess`",
        }
    )
    if as_json:
        console.emit_json(rows)
        return
    table = console.table(
        "Datasets",
        ["name", "shape", "#classes", "#train", "#test", "here", "description"],
        [
            [
                r["name"],
                "x".join(map(str, r["image_shape"])) if r["image_shape"] else "any",
                r["num_classes"] or "any",
                f"{r['splits']['train']:,}" if r["splits"] else "",
                f"{r['splits']['test']:,}" if r["splits"] and "test" in r["splits"] else "",
                {True: "yes", False: "no", None: ""}[r["available"]],
                r["description"],
            ]
            for r in rows
        ],
        caption="Any other TFDS image-classification dataset works by name "
        "(`tfvision data info NAME`). 'here': prepared in the data directory.",
    )
    console.print_table(table)


@group.command(
    epilog=examples(
        "tfvision data download mnist", "tfvision data download cifar10 --data-dir ~/tfds"
    )
)
def download(
    name: str = typer.Argument(..., help="TFDS dataset name, e.g. mnist or cifar10."),
    data_dir: str | None = DATA_DIR,
    as_json: Json = False,
) -> None:
    """Download and prepare a TFDS dataset (through TFDS's own downloader)."""
    from tfvision_cli.data.tfds_source import download as do_download

    console.log("preparing [bold]{name}[/] ...", name=name)
    info = do_download(name, data_dir)
    if as_json:
        console.emit_json(info.to_dict())
    else:
        splits = ", ".join(f"{k} {v:,}" for k, v in info.splits.items())
        console.log(
            "[green]ready:[/] {name} in {location} ({splits})",
            name=name,
            location=info.location or "",
            splits=splits,
        )


@group.command(epilog=examples("tfvision data info mnist", "tfvision data info ./my_images --json"))
def info(
    name: str = typer.Argument(
        ..., help="Dataset name or folder.", autocompletion=complete_datasets
    ),
    data_dir: str | None = DATA_DIR,
    as_json: Json = False,
) -> None:
    """Splits, shapes, classes, examples per class and pixel statistics."""
    from tfvision_cli.data.catalog import describe, open_dataset

    d = describe(open_dataset(name, data_dir=data_dir))
    if as_json:
        console.emit_json(d)
        return
    summary = console.table(
        f"{d['name']}  ({d['source']})",
        ["field", "value"],
        [
            ["location", d["location"]],
            ["layout", d["extra"].get("layout", d["source"])],
            ["splits", ", ".join(f"{k}: {v:,}" for k, v in d["splits"].items())],
            ["image", f"{'x'.join(map(str, d['image_shape']))} {d['image_dtype']}"],
            ["classes", d["num_classes"]],
            ["pixel mean", ", ".join(f"{v:.2f}" for v in d["pixel_stats"]["mean"])],
            ["pixel std", ", ".join(f"{v:.2f}" for v in d["pixel_stats"]["std"])],
        ],
        show_header=False,
    )
    console.print_table(summary)
    splits = list(d["class_counts_per_split"])
    rows = [
        [i, cname, *(d["class_counts_per_split"][s][i] for s in splits), d["class_counts"][cname]]
        for i, cname in enumerate(d["class_names"])
    ]
    console.print_table(
        console.table(
            "Examples per class", ["#label", "class", *(f"#{s}" for s in splits), "#total"], rows
        )
    )
    for line in d["imbalance"]:
        console.warn(f"imbalanced {line}")


AUGMENT_FIELDS = ("augment", "augment_magnitude", "mixup", "cutmix", "random_erasing")


@group.command(
    epilog=examples(
        "tfvision data preview mnist --count 16",
        "tfvision data preview ./my_images --augment medium --mixup 0.2 -o augmented.png",
    )
)
@takes_config(only=AUGMENT_FIELDS)
def preview(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., help="Dataset name or folder.", autocompletion=complete_datasets
    ),
    *,
    out: Path = typer.Option(Path("preview.png"), "--out", "-o", help="PNG file to write."),
    split: str = typer.Option("train", "--split", help="Split to sample from."),
    count: int = typer.Option(32, "--count", min=1, max=256, help="Number of images."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**32 - 1, help="Which images (seeded sample)."
    ),
    data_dir: str | None = DATA_DIR,
    flags: dict,
) -> None:
    """A labelled grid of sample images, as a PNG; with augmentation options, each image beside
    what training makes of it (and its soft label, with MixUp/CutMix)."""
    from tfvision_cli.config import TrainConfig
    from tfvision_cli.data.catalog import open_dataset, sample
    from tfvision_cli.plots import image_grid

    dataset = open_dataset(name, data_dir=data_dir)
    images, labels = sample(dataset, split, count, seed)
    names = dataset.info.class_names
    title = f"{dataset.info.name} / {split}: {len(images)} samples"
    if not flags:
        path = image_grid(images, [names[i] for i in labels], out, suptitle=title)
    else:
        config = TrainConfig(**flags, seed=seed).validate()
        path = _augmented_grid(dataset, images, labels, config, out, title)
    console.log("wrote {path}", path=path)
    typer.echo(str(path))


def _augmented_grid(dataset, images, labels, config, out: Path, title: str) -> Path:
    import numpy as np

    from tfvision_cli.data.pipeline import (
        augment_sample,
        augmenter,
        flips_make_sense,
        mixer,
        resolve_augment,
    )
    from tfvision_cli.plots import image_grid

    info = dataset.info
    # auto: what training on this dataset would use (its train split's size decides)
    level = resolve_augment(
        config.augment, info.splits.get("train", len(images)), images.shape[1:], info.num_classes
    )
    flips = flips_make_sense(info.name, info.class_names, images.shape[-1])
    augment = augmenter(level, flips, config.seed, config.augment_magnitude, config.random_erasing)
    mix = mixer(config.mixup, config.cutmix, config.seed)
    after, soft = augment_sample(images, labels, info.num_classes, augment, mix)
    names = info.class_names
    pairs = np.empty((2 * len(images), *images.shape[1:]), np.uint8)
    pairs[0::2], pairs[1::2] = images, after
    titles = []
    for label, row in zip(labels, soft, strict=True):
        top = [i for i in np.argsort(-row)[:2] if row[i] > 0.005]
        titles += [names[label], " ".join(f"{names[i]} {row[i]:.2f}" for i in top)]
    used = ", ".join(
        f"{k} {getattr(config, k)}"
        for k in AUGMENT_FIELDS
        if getattr(config, k) not in (0, 0.0, "none")
    )
    return image_grid(pairs, titles, out, suptitle=f"{title}; each before / after ({used})")


app.add_typer(group, name="data")
