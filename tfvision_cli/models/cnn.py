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
    input_shape, num_classes, width: int = 32, dropout: float = 0.1, stem_padding: str = "valid"
):
    """A strided 5x5 stem, then 3x3 convs after downsampling, BatchNorm, global pooling.

    Full-resolution convolutions with many channels are what makes MNIST nets slow on a
    CPU, so the stem halves the resolution at once, unpadded: 12x12 maps on 28x28 images
    (MNIST's digits sit in the middle 20x20), 0.66x the FLOPs of a "same" stem's 14x14, and
    as accurate: 4 epochs of width 32 reach 99.38 / 99.43% on MNIST (seeds 0 / 1; "same":
    99.33 / 99.44%) in 0.8x the time (benchmarks/RESULTS.md, issue 37).
    """
    import keras
    from keras import layers

    w = int(width)
    if stem_padding not in ("same", "valid"):
        raise UsageError(f"fastnet: stem_padding must be 'same' or 'valid', not {stem_padding!r}")
    inputs = image_input(input_shape)
    x = preprocess_stem(inputs, min_size=28)
    x = _conv_bn(x, w, kernel=5, strides=2, padding=stem_padding, name="stem")  # (14|12)^2 x w
    x = _conv_bn(x, 2 * w, name="b1")  # (12|10)^2 x 2w
    x = layers.MaxPooling2D(2)(x)  # (6|5)^2 x 2w
    x = _conv_bn(x, 4 * w, name="b2")  # (4|3)^2 x 4w
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
