"""Typer options generated from TrainConfig's field declarations (config.py), so that every
training option is declared once: its flag, type, default, choices, bounds, help and shell
completion all come from the field."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable

import typer

from tfvision_cli.cli import common
from tfvision_cli.cli.complete import (
    complete_datasets,
    complete_models,
    complete_runs,
    starting_with,
)
from tfvision_cli.config import PRESETS, TrainConfig, base_type, interval

_COMPLETERS: dict[str, Callable[[str], list[str]]] = {
    "models": complete_models,
    "datasets": complete_datasets,
    "runs": complete_runs,
}


# each TrainConfig option's --help panel (a test checks that every option has one)
PANELS = {
    common.DATA: ("validation_split", "class_weight", "data_dir", "cache"),
    common.MODEL: ("model", "init_from", "pretrained", "freeze_backbone"),
    common.OPTIMISATION: (
        "preset",
        "epochs",
        "batch_size",
        "optimizer",
        "learning_rate",
        "schedule",
        "warmup_epochs",
        "weight_decay",
        "early_stopping",
        "steps_per_epoch",
    ),
    common.AUGMENTATION: (
        "augment",
        "augment_magnitude",
        "mixup",
        "cutmix",
        "random_erasing",
        "label_smoothing",
        "l1",
        "l2",
        "adversarial",
        "adversarial_share",
    ),
    common.DEVICES: ("strategy", "mixed_precision", "deterministic", "steps_per_execution", "xla"),
    common.OUTPUT: ("seed", "calibrate", "track"),
}
PANEL_ORDER = (
    common.DATA,
    common.MODEL,
    common.OPTIMISATION,
    common.AUGMENTATION,
    common.DEVICES,
    common.OUTPUT,
)


def _panel_rank(p: inspect.Parameter) -> int:
    info = p.default
    if isinstance(info, typer.models.ParameterInfo):
        panel = info.rich_help_panel
    else:  # Annotated[type, typer.Option(...)]
        panel = next((m.rich_help_panel for m in getattr(p.annotation, "__metadata__", ())), None)
    return PANEL_ORDER.index(panel) if panel in PANEL_ORDER else len(PANEL_ORDER)


_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def cli_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)]


def _help(f: dataclasses.Field) -> str:
    meta, kind = f.metadata, base_type(f)
    text = meta["help"]
    choices = meta.get("choices") or (tuple(PRESETS) if f.name == "preset" else None)
    if choices:
        text += f" One of: {', '.join(choices)}."
    if kind in (int, float) and any(meta.get(k) is not None for k in ("low", "above", "high")):
        text += f" Range {interval(meta)}."
    return text


def _option(f: dataclasses.Field) -> inspect.Parameter:
    meta, kind = f.metadata, base_type(f)
    choices = meta.get("choices") or (tuple(PRESETS) if f.name == "preset" else None)
    flag = flag_of(f)
    if kind is bool:
        decls, metavar = [f"{flag}/--no-{flag[2:]}"], ""
    else:
        decls = [flag, *meta.get("aliases", ())]
        metavar = "NAME" if choices else None
    completer = starting_with(choices) if choices else _COMPLETERS.get(meta.get("complete"))
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None and meta.get("shown") is not None:
        default = meta["shown"]  # only shown: options count only when typed (see given())
    option = typer.Option(
        default,
        *decls,
        help=_help(f),
        metavar=metavar,
        autocompletion=completer,
        show_default=default is not None and kind is not bool,
        rich_help_panel=_PANEL_OF.get(f.name),
    )
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None
    )


def config_options(
    exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None
) -> list[inspect.Parameter]:
    """One Typer option per TrainConfig field the command line spells as a flag (but the
    fields a command sets itself: prune's architecture is its source's; or only some: the
    augmentation options of `data preview`)."""
    return [
        _option(f)
        for f in cli_fields()
        if f.name not in exclude and (only is None or f.name in only)
    ]


def given(ctx: typer.Context, values: dict) -> dict:
    """The config options the user typed (not their defaults): flags override config files
    and presets only where given."""
    from typer._click.core import ParameterSource

    names = {f.name for f in cli_fields()}
    return {
        name: value
        for name, value in values.items()
        if name in names and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }


def takes_config(exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None):
    """A command that also takes TrainConfig's options: the command is an ordinary typed
    function `fn(ctx, <its own parameters>, *, flags: dict)`; the options generated from the
    config's fields are added to what Typer sees, and `flags` receives the ones the user typed
    (given()), so that config files and presets are overridden only where asked."""

    def wrap(fn: Callable) -> Callable:
        own = [
            p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "flags"
        ]
        extra = config_options(exclude, only)
        names = {p.name for p in extra}

        @functools.wraps(fn)
        def command(ctx: typer.Context, **values):
            flags = given(ctx, values)
            return fn(ctx, **{k: v for k, v in values.items() if k not in names}, flags=flags)

        positional = [p for p in own if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[len(positional) :]]
        # --help shows the panels in the order of PANEL_ORDER, whoever declared the option
        options = sorted([*keyword, *extra], key=_panel_rank)
        # Typer reads __signature__; __wrapped__ resolves the function's own annotations
        command.__signature__ = inspect.Signature([*positional, *options])
        return command

    return wrap
