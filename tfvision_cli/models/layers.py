"""Pieces every model shares: the uint8 input and the preprocessing carried inside the model."""

from __future__ import annotations


def image_input(input_shape, name: str = "image"):
    """The model input: raw uint8 images (batch, H, W, C)."""
    import keras

    return keras.Input(shape=tuple(input_shape), dtype="uint8", name=name)


def preprocess_stem(
    inputs,
    *,
    min_size: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    scale: str = "unit",
):
    """Inside-the-model preprocessing, so nothing has to be done to images outside it.

    Args:
        min_size: resize up so both sides are at least this (for nets that pool a lot).
        size: resize to exactly (H, W) (the model's native size).
        channels: 3 to feed grey images to nets that want colour (the grey value is repeated).
        scale: "unit" -> [0, 1]; "symmetric" -> [-1, 1]; "raw" -> float 0..255 (keras.applications
            nets that rescale inside themselves).
    """
    from keras import layers

    x = inputs
    if scale == "unit":
        x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    elif scale == "symmetric":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    else:
        x = layers.Rescaling(1.0, name="to_float")(x)
    h, w, c = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    target = size
    if target is None and min_size is not None and min(h, w) < min_size:
        k = min_size / min(h, w)
        target = (max(min_size, round(h * k)), max(min_size, round(w * k)))
    if target is not None and tuple(target) != (h, w):
        x = layers.Resizing(target[0], target[1], interpolation="bilinear", name="resize")(x)
    if channels == 3 and c == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    return x


def classifier_head(x, num_classes: int, dropout: float = 0.0, name: str = "predictions"):
    """Dense softmax in float32 (stays float32 under mixed precision)."""
    from keras import layers

    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(x)


def stochastic_depth(x, rate: float, name: str):
    """Stochastic depth (Huang et al. 2016): in training a residual branch is dropped for a
    whole example with probability `rate`, the kept ones scaled by 1 / (1 - rate); the identity
    at inference. Keras's own Dropout with a per-example noise shape computes exactly that, so
    the saved model loads in plain Keras."""
    from keras import layers

    noise_shape = (None,) + (1,) * (len(x.shape) - 1)  # one draw per example
    return layers.Dropout(rate, noise_shape=noise_shape, name=name)(x)


def add_position_embedding(x, name: str = "position_embedding"):
    """(batch, tokens, dim) plus a learnt embedding per token position, built from Keras's own
    layers and ops (an Embedding looked up at positions 0..tokens-1), so the saved model loads
    in plain Keras."""
    import keras
    from keras import layers

    tokens, dim = int(x.shape[1]), int(x.shape[2])
    ones = keras.ops.ones_like(x[:, :, 0], dtype="int32")  # (batch, tokens)
    positions = keras.ops.cumsum(ones, axis=1) - 1
    embedding = layers.Embedding(
        tokens, dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02), name=name
    )(positions)
    return layers.Add(name=f"{name}_add")([x, embedding])
