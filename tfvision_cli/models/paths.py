"""A model's float path: every tfvision model takes uint8 images and rescales them inside (a
layer named `rescale` or `to_float`). Gradients (explanations, adversarial examples, robustness)
are taken from that layer's float output, so they never flow through a cast."""

from __future__ import annotations

from tfvision_cli.errors import UsageError

STEMS = ("rescale", "to_float")


def find_stem(model):
    """The model's rescaling layer: gradients are taken from its float output."""
    stem = next((layer for layer in model.layers if layer.name in STEMS), None)
    if stem is None:
        raise UsageError(
            "this model has no rescaling layer at its input (rescale/to_float): its gradients "
            "cannot be taken from the float image"
        )
    return stem


def float_path(model):
    """(the model from its rescaled float input to its probabilities, the rescaling layer)."""
    import keras

    stem = find_stem(model)
    return keras.Model(stem.output, model.output), stem
