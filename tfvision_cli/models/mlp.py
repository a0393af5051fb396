"""The multilayer perceptron of the first Keras tutorial."""

from tfvision_cli.models.layers import classifier_head, image_input, preprocess_stem
from tfvision_cli.models.registry import register_model


@register_model(
    "mlp", family="mlp", description="Flatten -> Dense 128 ReLU (x depth) -> Dense (the classic)"
)
def mlp(input_shape, num_classes, hidden: int = 128, depth: int = 1, dropout: float = 0.0):
    """`depth` hidden layers of `hidden` units: Hinton et al. 2015's distillation student is
    hidden=800, depth=2."""
    import keras
    from keras import layers

    if int(depth) < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    inputs = image_input(input_shape)
    x = preprocess_stem(inputs)
    x = layers.Flatten()(x)
    for _ in range(int(depth)):
        x = layers.Dense(int(hidden), activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name="mlp")
