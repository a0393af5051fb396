"""L1/L2 penalties on every kernel of a built model (`--l1`, `--l2`).

They differ from `--weight-decay` (decoupled, AdamW-style, the default way to regularise here):
an L1/L2 penalty is added to the loss, so it goes through the optimizer's adaptive scaling and,
for L1, drives weights to exact zeros. Keras attaches a regularizer when a layer creates its
weights, so the model is cloned with the penalty in every kernel's configuration (nested models
too) and its weights copied back (pretrained ImageNet weights are kept). The penalties are part
of the saved `.keras` configuration: built-in Keras objects, loadable in safe mode.
"""

from __future__ import annotations

# the configuration keys of the weights that are kernels (not biases, norms or embeddings)
KERNEL_KEYS = ("kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer")


def regularize(model, l1: float, l2: float):
    """(model with L1/L2 on every kernel, how many kernels got it); model itself when both are
    zero."""
    import keras

    if not (l1 or l2):
        return model, 0
    penalty = keras.regularizers.L1L2(l1=float(l1), l2=float(l2))
    count = 0

    def clone(layer):
        nonlocal count
        config = layer.get_config()
        keys = [k for k in KERNEL_KEYS if k in config]
        for key in keys:
            config[key] = penalty
        count += len(keys)
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy, count
