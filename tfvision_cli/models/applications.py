"""ImageNet architectures from keras.applications, wrapped to take raw uint8 images."""

from tfvision_cli.errors import TfvisionError, UsageError
from tfvision_cli.models.layers import classifier_head, image_input, preprocess_stem
from tfvision_cli.models.registry import register_model


def _application(
    builder, name, input_shape, num_classes, pretrained, scale, min_size=32, dropout=0.2, **kwargs
):
    import keras

    inputs = image_input(input_shape)
    x = preprocess_stem(inputs, min_size=min_size, channels=3, scale=scale)
    weights = "imagenet" if pretrained else None
    try:
        backbone = builder(
            include_top=False,
            weights=weights,
            input_shape=tuple(x.shape[1:]),
            pooling="avg",
            **kwargs,
        )
    except ValueError as e:
        raise UsageError(f"{name}: {str(e).splitlines()[0]}") from None
    except Exception as e:  # fetching weights: URLError, HTTPError, OSError, ...
        if pretrained:
            raise TfvisionError(
                f"{name}: could not fetch ImageNet weights ({type(e).__name__})",
                hint="they download from the internet once; without a network, train from "
                "scratch (drop --pretrained) or put the weights file in ~/.keras/models",
            ) from None
        raise
    x = backbone(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name=name)


@register_model(
    "mobilenet_v2",
    family="mobilenet",
    description="MobileNetV2 (keras.applications); --pretrained for ImageNet weights",
)
def mobilenet_v2(
    input_shape, num_classes, pretrained: bool = False, alpha: float = 1.0, dropout: float = 0.2
):
    import keras

    # MobileNetV2 expects inputs in [-1, 1].
    return _application(
        keras.applications.MobileNetV2,
        "mobilenet_v2",
        input_shape,
        num_classes,
        pretrained,
        scale="symmetric",
        dropout=dropout,
        alpha=float(alpha),
    )


@register_model(
    "efficientnet_b0",
    family="efficientnet",
    description="EfficientNet-B0 (keras.applications); --pretrained for ImageNet",
)
def efficientnet_b0(input_shape, num_classes, pretrained: bool = False, dropout: float = 0.2):
    import keras

    # EfficientNet rescales and normalises inside itself: feed it 0..255 floats.
    return _application(
        keras.applications.EfficientNetB0,
        "efficientnet_b0",
        input_shape,
        num_classes,
        pretrained,
        scale="raw",
        dropout=dropout,
    )
