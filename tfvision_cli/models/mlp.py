"""The multilayer perceptron of the first Keras tutorial."""

from tfvision_cli.models.layers import classifier_head, image_input, preprocess_stem
from tfvision_cli.models.registry import register_model


@register_model("mlp", family="mlp", description="Flatten -> Dense 128 ReLU -> Dense (the classic)")
def mlp(input_shape, num_classes, hidden: int = 128, dropout: float = 0.0):
    import keras
    from keras import layers

    inputs = image_input(input_shape)
    x = preprocess_stem(inputs)
    x = layers.Flatten()(x)
    x = layers.Dense(int(hidden), activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name="mlp")
