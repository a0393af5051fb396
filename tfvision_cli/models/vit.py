"""A small Vision Transformer (Dosovitskiy et al. 2021) for small images."""

import math

from tfvision_cli.models.layers import (
    add_position_embedding,
    classifier_head,
    image_input,
    preprocess_stem,
    stochastic_depth,
)
from tfvision_cli.models.registry import register_model


@register_model(
    "vit", family="vit", description="Vision Transformer: 4x4 patches, 4 blocks, dim 64, 4 heads"
)
def vit(
    input_shape,
    num_classes,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_dim: int = 128,
    dropout: float = 0.1,
    drop_path: float = 0.0,
):
    import keras
    from keras import layers

    p, dim = int(patch_size), int(dim)
    inputs = image_input(input_shape)
    h, w = input_shape[:2]
    size = (math.ceil(h / p) * p, math.ceil(w / p) * p)
    x = preprocess_stem(inputs, size=size if size != (h, w) else None)
    x = layers.Conv2D(dim, p, strides=p, name="patch_embed")(x)  # (batch, H/p, W/p, dim)
    x = layers.Reshape((-1, dim), name="patches")(x)  # (batch, patches, dim)
    x = add_position_embedding(x)

    def dropped(y, i, part):  # stochastic depth, rising with depth
        rate = float(drop_path) * i / max(int(depth) - 1, 1)
        return stochastic_depth(y, rate, f"block{i}_drop_path{part}") if rate else y

    for i in range(int(depth)):
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        y = layers.MultiHeadAttention(
            int(heads), dim // int(heads), dropout=float(dropout), name=f"block{i}_attn"
        )(y, y)
        x = layers.Add(name=f"block{i}_add1")([x, dropped(y, i, 1)])
        y = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        y = layers.Dense(int(mlp_dim), activation="gelu", name=f"block{i}_mlp1")(y)
        y = layers.Dropout(float(dropout))(y)
        y = layers.Dense(dim, name=f"block{i}_mlp2")(y)
        x = layers.Add(name=f"block{i}_add2")([x, dropped(y, i, 2)])
    x = layers.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="vit")
