"""Recurrent nets that read an image row by row, as in the early Keras MNIST examples."""

from tfvision_cli.errors import UsageError
from tfvision_cli.models.layers import classifier_head, image_input, preprocess_stem
from tfvision_cli.models.registry import register_model


@register_model(
    "rnn", family="rnn", description="LSTM (or --model-option cell=gru) over image rows, 128 units"
)
def rnn(input_shape, num_classes, cell: str = "lstm", units: int = 128, dropout: float = 0.0):
    import keras
    from keras import layers

    cells = {"lstm": layers.LSTM, "gru": layers.GRU}
    if cell not in cells:
        raise UsageError(f"rnn cell must be lstm or gru, got {cell!r}")
    h, w, c = input_shape
    inputs = image_input(input_shape)
    x = preprocess_stem(inputs)
    x = layers.Reshape((h, w * c), name="rows")(x)  # (batch, rows, pixels per row)
    x = cells[cell](int(units), name=cell)(x)
    return keras.Model(inputs, classifier_head(x, num_classes, float(dropout)), name=f"rnn_{cell}")
