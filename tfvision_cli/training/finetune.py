"""Starting from a trained model: `--init-from RUN|FILE.keras` (same architecture, a new head
when the classes differ) and `--model FILE.keras` (a model file trained as it is)."""

from __future__ import annotations

from pathlib import Path

from tfvision_cli.errors import UsageError
from tfvision_cli.runs import RunDir, resolve_run


def is_model_file(spec: str) -> bool:
    return str(spec).endswith(".keras")


def source_file(spec: str) -> Path:
    """The .keras file behind a run directory, `latest` or a .keras path."""
    if is_model_file(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UsageError(f"model file {spec} does not exist")
        return path
    run = resolve_run(spec)
    if not run.model.is_file():
        raise UsageError(f"run {run.path} has no model.keras to start from")
    return run.model


def run_architecture(spec: str) -> dict | None:
    """model and model_options of the run spec names (None for a file): what --init-from RUN
    trains when no --model is given."""
    from tfvision_cli.config import read_yaml

    if is_model_file(spec) or not (spec == "latest" or RunDir(spec).exists()):
        return None
    values = read_yaml(resolve_run(spec).config)
    return {k: values[k] for k in ("model", "model_options") if k in values}


def check_source(spec: str) -> list[str]:
    """What is wrong with --init-from / --model FILE, found without TensorFlow."""
    try:
        source_file(spec)
    except UsageError as e:
        return [str(e)]
    return []


def model_from_file(path: str, shape, n_classes: int):
    """A .keras file (safe_mode) that must take these images and give these classes."""
    from tfvision_cli.models.custom_layers import with_fused_batch_norm
    from tfvision_cli.models.io import load_model

    model = with_fused_batch_norm(load_model(Path(path)))
    takes = tuple(int(d) for d in model.inputs[0].shape[1:])
    gives = int(model.outputs[0].shape[-1])
    if takes != tuple(shape) or gives != n_classes:
        raise UsageError(
            f"{path} takes {'x'.join(map(str, takes))} images into {gives} classes but the data "
            f"is {'x'.join(map(str, shape))} with {n_classes} classes",
            hint="--init-from FILE builds the model for the data and starts from its weights",
        )
    return model


def init_weights(model, spec: str, class_names: list[str] | None = None) -> dict:
    """Copy the weights of the model at spec into model, layer by layer in order, wherever the
    shapes agree. The classifier head is copied class by class, by name: a class both know
    keeps its trained weights wherever it sits in the new order; a new class starts afresh."""
    from tfvision_cli.models.io import load_model

    source = load_model(source_file(spec))
    ours, theirs = _weighted(model), _weighted(source)
    copied, fresh = 0, []
    for target, layer in zip(ours[:-1], theirs[:-1], strict=False):
        if [w.shape for w in layer.get_weights()] == [w.shape for w in target.get_weights()]:
            target.set_weights(layer.get_weights())
            copied += 1
        else:
            fresh.append(target.name)
    fresh += [layer.name for layer in ours[len(theirs) - 1 : -1]]
    if not copied:
        raise UsageError(
            f"{spec} shares no layer with {model.name}: --init-from needs the same architecture"
        )
    head = _copy_head(ours[-1], theirs[-1], class_names, source_class_names(spec))
    if head is None:
        fresh.append(ours[-1].name)
    else:
        copied += 1
    notes = {"init_from": str(spec), "layers_copied": copied, "layers_started_afresh": fresh}
    if head:
        notes["head_classes_copied"] = head
    return notes


def _copy_head(target, source, names, source_names) -> list[str] | None:
    """The classes whose head weights were copied (by name; by position only when either side
    names no class and the shapes agree), or None when the head starts afresh."""
    ours, theirs = target.get_weights(), source.get_weights()
    if len(ours) != 2 or len(theirs) != 2 or ours[0].shape[0] != theirs[0].shape[0]:
        return None  # not a dense head on the same features
    if names and source_names and len(source_names) == theirs[0].shape[1]:
        column = {n: i for i, n in enumerate(source_names)}
        pairs = [(j, column[n]) for j, n in enumerate(names) if n in column]
    elif ours[0].shape == theirs[0].shape:
        pairs = [(j, j) for j in range(ours[0].shape[1])]
    else:
        return None
    if not pairs:
        return None
    for j, i in pairs:
        ours[0][:, j], ours[1][j] = theirs[0][:, i], theirs[1][i]
    target.set_weights(ours)
    return [names[j] if names else str(j) for j, _ in pairs]


def source_class_names(spec: str) -> list[str] | None:
    """The class names of the model at spec: its run's classes.json, or an exported file's
    metadata; None when nothing names them."""
    from tfvision_cli.files import read_metadata

    path = source_file(spec)
    run = RunDir(path.parent)
    meta = _json(run.classes) if path == run.model and run.is_ours() else read_metadata(path)
    names = meta.get("class_names")
    return [str(n) for n in names] if isinstance(names, list) else None


def _json(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _weighted(model) -> list:
    return [layer for layer in model.layers if layer.weights]
