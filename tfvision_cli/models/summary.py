"""Parameters, FLOPs and a layer table for a model."""

from __future__ import annotations


def all_layers(layer):
    """Every layer inside layer, nested models included."""
    for sub in getattr(layer, "layers", []):
        yield sub
        yield from all_layers(sub)


def count_params(model) -> int:
    return int(
        sum(
            int(w.shape.num_elements() or 0)
            if hasattr(w.shape, "num_elements")
            else int(_prod(w.shape))
            for w in model.weights
        )
    )


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def flops_per_image(model) -> int | None:
    """Floating-point operations of one forward pass (a multiply-add counts 2), by TF's profiler."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2_as_graph,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    try:
        _, graph_def = convert_variables_to_constants_v2_as_graph(concrete)
        with tf.Graph().as_default() as graph:
            tf.graph_util.import_graph_def(graph_def, name="")
            opts = (
                option_builder.ProfileOptionBuilder(
                    option_builder.ProfileOptionBuilder.float_operation()
                )
                .with_empty_output()
                .build()
            )
            info = model_analyzer.profile(graph=graph, options=opts)
        return int(info.total_float_ops)
    except Exception:  # the profiler does not know every op; FLOPs are then unknown
        return None


def layer_rows(model) -> list[list[str]]:
    """[name, type, output shape, params] per top-level layer."""
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape)).replace("None", "batch")
        except (AttributeError, ValueError):
            shape = "?"
        rows.append(
            [
                layer.name,
                type(layer).__name__,
                shape,
                f"{sum(_prod(w.shape) for w in layer.weights):,}",
            ]
        )
    return rows
