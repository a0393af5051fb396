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


def init_weights(model, spec: str) -> dict:
    """Copy the weights of the model at spec into model, layer by layer in order, wherever the
    shapes agree (a classifier head for other classes does not, and starts afresh)."""
    from tfvision_cli.models.io import load_model

    source = load_model(source_file(spec))
    copied, fresh = 0, []
    for target, layer in zip(_weighted(model), _weighted(source), strict=False):
        theirs, ours = layer.get_weights(), target.get_weights()
        if [w.shape for w in theirs] == [w.shape for w in ours]:
            target.set_weights(theirs)
            copied += 1
        else:
            fresh.append(target.name)
    fresh += [layer.name for layer in _weighted(model)[len(_weighted(source)) :]]
    if not copied:
        raise UsageError(
            f"{spec} shares no layer with {model.name}: --init-from needs the same architecture"
        )
    return {"init_from": str(spec), "layers_copied": copied, "layers_started_afresh": fresh}


def _weighted(model) -> list:
    return [layer for layer in model.layers if layer.weights]
