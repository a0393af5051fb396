"""Matching a dataset's classes to a model's by name, wherever a model meets labelled data.

A folder dataset's classes are its sorted folder names; a model's are the names it was trained
with, in its own order. Label 3 of the data is label 3 of the model only when both name it the
same: everything that scores a model on data (evaluate, compare, robustness, export's parity
check, fine-tuning's head) goes through match_classes, never through positions alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError


def index_names(n: int) -> list[str]:
    """The names a source without class names gives its labels: '0', '1', ..."""
    return [str(i) for i in range(n)]


@dataclass
class ClassMatch:
    """How a dataset's labels become a model's."""

    data_names: list[str]
    model_names: list[str]
    to_model: np.ndarray  # data label -> model label, -1 for a class the class map drops
    by: str  # "names", "positions" (the model names no class) or "class map"
    note: str | None = None  # one sentence for the user when the match is not the plain one

    @property
    def present(self) -> list[int]:
        """The model's labels that the data holds, in the model's order."""
        return sorted({int(i) for i in self.to_model if i >= 0})

    def labels(self, data_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(model labels, mask of the examples kept): the dropped classes' examples are not."""
        mapped = self.to_model[np.asarray(data_labels, dtype=np.int64)]
        keep = mapped >= 0
        return mapped[keep], keep

    def to_dict(self) -> dict:
        absent = [n for i, n in enumerate(self.model_names) if i not in set(self.present)]
        d = {
            "by": self.by,
            "classes_present": len(self.present),
            "model_classes": len(self.model_names),
            "absent_from_data": absent,
        }
        dropped = [n for n, i in zip(self.data_names, self.to_model, strict=True) if i < 0]
        if dropped:
            d["dropped_from_data"] = dropped
        return d


def read_class_map(path: str | Path | None) -> dict[str, str | None] | None:
    """A YAML file of `data_name: model_name` (null drops that class of the data)."""
    if path is None:
        return None
    from tfvision_cli.config import read_yaml_file

    data = read_yaml_file(Path(path), f"--class-map {path}")
    if not isinstance(data, dict) or not data:
        raise UsageError(f"--class-map {path} must map data class names to model class names")
    bad = [k for k, v in data.items() if not isinstance(v, str | int | type(None))]
    if bad:
        raise UsageError(f"--class-map {path}: {bad[0]!r} must map to one class name (or null)")
    return {str(k): None if v is None else str(v) for k, v in data.items()}


def _few(names: list[str], k: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:k])
    return f"[{shown}{', ...' if len(names) > k else ''}] ({len(names)})"


def match_classes(
    data_names: list[str],
    model_names: list[str],
    class_map: dict[str, str | None] | None = None,
    what: str = "the data",
    model_named: bool = True,
) -> ClassMatch:
    """Map data labels to model labels by class name.

    Every class of the data must be a class of the model (after class_map); the model may have
    more (the data is then a subset of its classes). A model that names no class (model_named
    False: an export without its metadata, whose names are '0'..'n-1' stand-ins) is matched by
    position when the counts agree, and the match says so. Anything else is a UsageError
    listing both sets of names.
    """
    data_names, model_names = [str(n) for n in data_names], [str(n) for n in model_names]
    if class_map is not None:
        return _mapped(data_names, model_names, class_map, what)
    if data_names == model_names:
        return ClassMatch(data_names, model_names, np.arange(len(data_names)), "names")
    index = {n: i for i, n in enumerate(model_names)}
    if all(n in index for n in data_names):
        to_model = np.asarray([index[n] for n in data_names], dtype=np.int64)
        match = ClassMatch(data_names, model_names, to_model, "names")
        if len(data_names) < len(model_names):
            match.note = (
                f"{what} holds {len(data_names)} of the model's {len(model_names)} classes: "
                "metrics are over the classes present"
            )
        return match
    if not model_named and len(model_names) == len(data_names):
        return ClassMatch(
            data_names,
            model_names,
            np.arange(len(data_names)),
            "positions",
            note=f"the model does not name its classes: {what}'s classes are matched by position",
        )
    missing = [n for n in data_names if n not in index]
    raise UsageError(
        f"the classes of {what} do not match the model's: {what} has {_few(data_names)}, the "
        f"model has {_few(model_names)}; not in the model: {_few(missing, 5)}",
        hint="--class-map FILE (YAML `data_name: model_name`) maps them",
    )


def _mapped(data_names, model_names, class_map, what) -> ClassMatch:
    unknown = [k for k in class_map if k not in data_names]
    if unknown:
        raise UsageError(
            f"--class-map names {_few(unknown, 5)}, which {what} does not have "
            f"(it has {_few(data_names)})"
        )
    index = {n: i for i, n in enumerate(model_names)}
    targets = [class_map.get(n, n) for n in data_names]
    wrong = [t for t in targets if t is not None and t not in index]
    if wrong:
        raise UsageError(
            f"--class-map maps to {_few(wrong, 5)}, which the model does not have "
            f"(it has {_few(model_names)})"
        )
    if all(t is None for t in targets):
        raise UsageError("--class-map drops every class of the data")
    to_model = np.asarray([-1 if t is None else index[t] for t in targets], dtype=np.int64)
    match = ClassMatch(data_names, model_names, to_model, "class map")
    match.note = (
        f"{what}'s classes mapped by the class map onto {len(match.present)} of the model's "
        f"{len(model_names)} classes"
    )
    return match
