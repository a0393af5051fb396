"""Saving and loading Keras models safely and atomically."""

from __future__ import annotations

from pathlib import Path

from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.files import atomic_file


def trained_model(model):
    """The model a run keeps: a distiller's student (its teacher is not part of the result),
    the model inside adversarial training's wrapper, or the model itself."""
    for name in ("student", "inner_model"):
        inner = getattr(model, name, None)
        if inner is not None:
            return inner
    return model


def save_model(model, path: Path) -> Path:
    """model.save to a temporary name, then rename: the file is never half-written. The file
    names Keras's own layers only, so `keras.models.load_model` reads it without tfvision."""
    from tfvision_cli.models.custom_layers import as_keras_batch_norm

    path = Path(path)
    try:
        plain = as_keras_batch_norm(trained_model(model))
        with atomic_file(path, suffix=".keras") as tmp, plain as keras_model:
            keras_model.save(tmp)
    except OSError as e:
        raise TfvisionError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def load_model(path: Path):
    """Load a .keras file with safe_mode on: no code inside the file ever runs."""
    from tfvision_cli.tf_import import tf

    tf()
    import keras

    import tfvision_cli.models.custom_layers  # noqa: F401  (registers tfvision's layers)

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as e:
        msg = str(e).splitlines()[0]
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise TfvisionError(
                f"{path} contains code (a Lambda layer) and is refused: loading it would run it"
            ) from None
        raise TfvisionError(f"cannot load {path}: {msg}") from None
    except (OSError, KeyError) as e:
        raise TfvisionError(f"cannot load {path}: not a valid .keras file ({e})") from None


def load_weights(model, path: Path) -> None:
    """The weights of a `.keras` file save_model wrote into model (built the same way)."""
    from tfvision_cli.models.custom_layers import as_keras_batch_norm

    with as_keras_batch_norm(trained_model(model)) as plain:
        plain.load_weights(path)


def scale_logits(model, factor: float) -> None:
    """Divide the logits by a temperature (factor = 1/T) inside the model: its last layer is a
    Dense softmax (every registry model's head), whose kernel and bias are scaled in place, so
    softmax((Wx + b) / T) is what the model, and every export of it, computes."""
    import keras

    head = model.layers[-1]
    if not (isinstance(head, keras.layers.Dense) and head.activation is keras.activations.softmax):
        raise UsageError(
            "this model does not end in a Dense softmax layer: its temperature cannot be set "
            "inside it"
        )
    kernel, *bias = head.get_weights()
    head.set_weights([kernel * factor, *(b * factor for b in bias)])
