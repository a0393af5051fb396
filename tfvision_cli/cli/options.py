"""Typer options generated from TrainConfig's field declarations (config.py), so that every
training option is declared once: its flag, type, default, choices, bounds, help and shell
completion all come from the field."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import typer

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


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def cli_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)]


def _help(f: dataclasses.Field) -> str:
    meta, kind = f.metadata, base_type(f)
    text = meta["help"]
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
        metavar = f"[{'|'.join(choices)}]" if choices else None
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
        show_default=default is not None,
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


def command_signature(own: list, positional: tuple[str, ...] = (), config: list | None = None):
    """The signature Typer reads for a command: ctx, the command's own (name, type, option)
    triples (the names in `positional` are arguments), then the TrainConfig options given."""
    return inspect.Signature(
        [
            inspect.Parameter(
                "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
            ),
            *(
                inspect.Parameter(
                    name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD
                    if name in positional
                    else inspect.Parameter.KEYWORD_ONLY,
                    default=default,
                    annotation=kind,
                )
                for name, kind, default in own
            ),
            *(config or []),
        ]
    )
