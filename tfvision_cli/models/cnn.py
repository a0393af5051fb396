"""Convolutional nets: LeNet-5, the classic Keras MNIST convnet, and tfvision's fast default."""

from tfvision_cli.errors import UsageError
from tfvision_cli.models.layers import classifier_head, image_input, preprocess_stem
from tfvision_cli.models.registry import register_model


@register_model(
    "cnn",
    family="cnn",
    description="Keras 'Simple MNIST convnet': Conv32-Pool-Conv64-Pool-Dropout-Dense",
)
def cnn(input_shape, num_classes, dropout: float = 0.5):
    import keras
    from keras import layers

    inputs = image_input(input_shape)
    x = preprocess_stem(inputs, min_size=28)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name="cnn")


@register_model(
    "lenet5", family="cnn", description="LeCun et al. 1998: 32x32 input, tanh, avg-pool"
)
def lenet5(input_shape, num_classes, dropout: float = 0.0):
    import keras
    from keras import layers

    inputs = image_input(input_shape)
    x = preprocess_stem(inputs, size=(32, 32))  # LeNet-5 read 28x28 digits padded to 32x32
    x = layers.Conv2D(6, 5, activation="tanh", name="c1")(x)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="tanh", name="c5")(x)
    x = layers.Dense(84, activation="tanh", name="f6")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name="lenet5")


def _conv_bn(x, filters, kernel=3, strides=1, padding="valid", name=None):
    from keras import layers

    from tfvision_cli.models.custom_layers import FusedBatchNormalization

    x = layers.Conv2D(
        filters, kernel, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    # momentum 0.9: moving statistics that keep up with short, high-learning-rate runs
    x = FusedBatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


@register_model(
    "fastnet",
    family="cnn",
    description="tfvision's default: a BatchNorm convnet sized for CPU FLOPs",
)
def fastnet(
    input_shape,
    num_classes,
    width: int = 32,
    dropout: float = 0.1,
    stem_padding: str = "valid",
    last_width: int | None = None,
):
    """A strided 5x5 stem, then 3x3 convs after downsampling, BatchNorm, global pooling:
    width, 2 x width and last_width (4 x width unless given) channels.

    Full-resolution convolutions with many channels are what makes MNIST nets slow on a
    CPU, so the stem halves the resolution at once, unpadded: 12x12 maps on 28x28 images
    (MNIST's digits sit in the middle 20x20), 0.66x the FLOPs of a "same" stem's 14x14, and
    as accurate: 4 epochs of width 32 reach 99.38 / 99.43% on MNIST (seeds 0 / 1; "same":
    99.33 / 99.44%) in 0.8x the time (benchmarks/RESULTS.md, issue 37).
    """
    import keras
    from keras import layers

    w = int(width)
    last = int(last_width) if last_width is not None else 4 * w
    if stem_padding not in ("same", "valid"):
        raise UsageError(f"fastnet: stem_padding must be 'same' or 'valid', not {stem_padding!r}")
    inputs = image_input(input_shape)
    x = preprocess_stem(inputs, min_size=28)
    x = _conv_bn(x, w, kernel=5, strides=2, padding=stem_padding, name="stem")  # (14|12)^2 x w
    x = _conv_bn(x, 2 * w, name="b1")  # (12|10)^2 x 2w
    x = layers.MaxPooling2D(2)(x)  # (6|5)^2 x 2w
    x = _conv_bn(x, last, name="b2")  # (4|3)^2 x last
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name="fastnet")


@register_model(
    "fastnet_s",
    family="cnn",
    description="fastnet at width 24: ~0.6x the FLOPs, --preset fast's model",
)
def fastnet_s(
    input_shape, num_classes, width: int = 24, dropout: float = 0.1, stem_padding: str = "valid"
):
    return fastnet(
        input_shape, num_classes, width=width, dropout=dropout, stem_padding=stem_padding
    )


@register_model(
    "fastnet_xs",
    family="cnn",
    description="fastnet at width 16, last block 128: --preset fast's model",
)
def fastnet_xs(
    input_shape,
    num_classes,
    width: int = 16,
    dropout: float = 0.1,
    stem_padding: str = "valid",
    last_width: int = 128,
):
    """Channels in multiples of 16, the float32 lanes of an AVX-512 register: on this machine
    width 16 (16, 32, 64) trains 1.5x faster than fastnet_s's 24 for 0.44x the FLOPs, and width
    20 no faster than 24 for 0.69x (neither 20 nor 24 is a multiple of 16). Two epochs at batch
    256 and lr 0.012: 99.18 / 99.12 / 99.16 / 99.15% on MNIST (seeds 0-3) in 13.0-14.1 s,
    against fastnet_s's 99.21 / 99.10 / 99.19 / 99.19% in 16.0-16.8 s (benchmarks/RESULTS.md,
    issue 37). The last
    block works on 3x3 maps, so its channels are cheap: 128 there gave 99.15% (mean of seeds
    0-3), 96 gave 99.05%, 64 gave 98.96% (seeds 0-1)."""
    return fastnet(
        input_shape,
        num_classes,
        width=width,
        dropout=dropout,
        stem_padding=stem_padding,
        last_width=last_width,
    )
