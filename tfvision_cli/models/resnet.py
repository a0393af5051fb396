"""Residual networks of the CIFAR kind (He et al. 2016, section 4.2)."""

from tfvision_cli.models.layers import (
    classifier_head,
    image_input,
    preprocess_stem,
    stochastic_depth,
)
from tfvision_cli.models.registry import register_model


def _basic_block(x, filters, strides, name, drop_rate=0.0):
    from keras import layers, regularizers

    from tfvision_cli.models.custom_layers import FusedBatchNormalization

    reg = regularizers.l2(1e-4)
    shortcut = x
    y = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_regularizer=reg,
        name=f"{name}_conv1",
    )(x)
    y = FusedBatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"{name}_conv2"
    )(y)
    y = FusedBatchNormalization(name=f"{name}_bn2")(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, kernel_regularizer=reg, name=f"{name}_proj"
        )(shortcut)
        shortcut = FusedBatchNormalization(name=f"{name}_proj_bn")(shortcut)
    if drop_rate:
        y = stochastic_depth(y, drop_rate, f"{name}_drop_path")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


@register_model(
    "resnet",
    family="resnet",
    description="ResNet-20 for 32x32 images (depth=6n+2: --model-option depth=32)",
)
def resnet(
    input_shape,
    num_classes,
    depth: int = 20,
    width: int = 16,
    dropout: float = 0.0,
    drop_path: float = 0.0,
):
    import keras
    from keras import layers

    from tfvision_cli.models.custom_layers import FusedBatchNormalization

    depth, width = int(depth), int(width)
    if (depth - 2) % 6:
        raise ValueError("resnet depth must be 6n+2 (20, 32, 44, 56, 110)")
    n = (depth - 2) // 6
    inputs = image_input(input_shape)
    x = preprocess_stem(inputs, min_size=16)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = FusedBatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    blocks = 3 * n
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            rate = float(drop_path) * (stage * n + block) / max(blocks - 1, 1)  # deeper: more
            x = _basic_block(x, filters, strides, f"s{stage + 1}b{block + 1}", rate)
    x = layers.GlobalAveragePooling2D()(x)
    head = classifier_head(x, num_classes, float(dropout))
    return keras.Model(inputs, head, name=f"resnet{depth}")
