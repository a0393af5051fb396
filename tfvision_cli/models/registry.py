"""The model registry: each model is a decorated function, as in timm.

    @register_model("cnn", family="cnn", description="...")
    def cnn(input_shape, num_classes, **options) -> keras.Model: ...

Model modules import Keras lazily (inside the function), so listing names costs nothing. The
package (models/__init__.py) imports every family module, as timm's does: importing anything
from tfvision_cli.models registers them all.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from tfvision_cli.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class ModelEntry:
    name: str
    fn: Callable
    family: str
    description: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, family: str, description: str):
    """Register fn(input_shape, num_classes, **options) -> keras.Model under name."""

    def decorator(fn: Callable) -> Callable:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, fn, family, description)
        return fn

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise UsageError(
            f"unknown model {name!r}.{did_you_mean(name, _MODELS)}",
            hint="`tfvision models list` shows them all",
        )
    return _MODELS[name]


def check_model(name: str, options: dict) -> list[str]:
    """What is wrong with a model name and its options (checked against the builder's
    signature), without building anything."""
    if name not in _MODELS:
        return [f"unknown model {name!r}.{did_you_mean(name, _MODELS)} (`tfvision models list`)"]
    accepted = list(inspect.signature(_MODELS[name].fn).parameters)[2:]
    return [
        f"model {name!r} has no option {key!r}.{did_you_mean(key, accepted)} "
        f"Its options: {', '.join(accepted) or 'none'}"
        for key in options
        if key not in accepted
    ]


def create_model(name: str, input_shape, num_classes: int, **options):
    """An uncompiled keras.Model that takes uint8 images of input_shape (H, W, C)."""
    from tfvision_cli.tf_import import tf

    entry = get_entry(name)
    tf()  # TensorFlow first, quietly, before any model module imports Keras
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1 or input_shape[2] not in (1, 3):
        raise UsageError(f"input shape must be H,W,C with C 1 or 3, got {input_shape}")
    if num_classes < 2:
        raise UsageError(f"a classifier needs at least 2 classes, got {num_classes}")
    problems = check_model(name, options)
    if problems:
        raise UsageError("; ".join(problems))
    try:
        return entry.fn(input_shape, num_classes, **options)
    except (ValueError, TypeError) as e:
        if not options:
            raise
        given = ", ".join(f"{k}={v}" for k, v in options.items())
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"model {name!r} cannot be built with {given}: {reason}") from None
