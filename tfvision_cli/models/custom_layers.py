"""tfvision's own Keras layers. Imports Keras at module level: import this module lazily.

Registered as serialisable, so `.keras` files load with safe_mode on once this is imported.
Models are built from Keras's own layers wherever Keras has one, and every `.keras` file tfvision
writes holds Keras's own layers only (io.save_model): it loads in plain Keras. AddPositionEmbedding
and DropPath stay registered for files written before that (tfvision 0.x runs).
"""

import contextlib

import keras

from tfvision_cli.models.summary import all_layers


@keras.saving.register_keras_serializable(package="tfvision")
class AddPositionEmbedding(keras.layers.Layer):
    """Adds a learnt embedding per patch position: (batch, patches, dim) -> same."""

    def build(self, input_shape):
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, input_shape[1], input_shape[2]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, x):
        return x + keras.ops.cast(self.embedding, x.dtype)


@keras.saving.register_keras_serializable(package="tfvision")
class DropPath(keras.layers.Layer):
    """Stochastic depth (Huang et al. 2016): in training, a residual branch is dropped for a
    whole example with probability `rate` and the kept ones are scaled by 1 / (1 - rate); at
    inference it is the identity. Keras has no such layer (keras_cv's StochasticDepth wraps the
    addition instead)."""

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        return x * keras.ops.floor(keep + noise) / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfvision")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization whose training step runs TensorFlow's fused kernel.

    Keras 3 builds BatchNorm on the TensorFlow backend from separate ops (moments, then the
    normalisation, each differentiated op by op: keras-team/keras-core#225, "BatchNorm is
    slow"); `FusedBatchNormV3` does the forward pass in one kernel and the backward pass in
    another. fastnet's train step is ~9% faster with it on 2 CPU cores (benchmarks/RESULTS.md).
    Same config, weights and moving statistics as Keras's layer; inference is Keras's own code
    (the parent's call), so evaluation and every export are unchanged. The fused kernel is used
    only where it computes the same thing: training, 4-D channels-last float32, no mask, no
    renorm, no synchronised statistics; anything else is the parent's call.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) == "float32"
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        from tfvision_cli.tf_import import tf as import_tf

        tf = import_tf()
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels])
        beta = self.beta if self.center else tf.zeros([channels])
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=keras.ops.cast(gamma, "float32"),
            offset=keras.ops.cast(beta, "float32"),
            mean=tf.zeros([0]),
            variance=tf.zeros([0]),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the unbiased (n - 1) variance; Keras's moving average takes the
        # biased one, as the normalisation itself does.
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return outputs


@contextlib.contextmanager
def as_keras_batch_norm(model):
    """While saving (or loading weights saved so): every FusedBatchNormalization of model is
    Keras's own
    BatchNormalization (same config, same weights, the same function at inference), so the
    `.keras` file loads in plain Keras without tfvision. The fused layer adds no state to its
    parent, so its class is swapped for the save and swapped back after: no copy of the model,
    no new variables (which a clone would create inside a distribution strategy's fit)."""
    fused = [layer for layer in all_layers(model) if type(layer) is FusedBatchNormalization]
    for layer in fused:
        layer.__class__ = keras.layers.BatchNormalization
    try:
        yield model
    finally:
        for layer in fused:
            layer.__class__ = FusedBatchNormalization


def with_fused_batch_norm(model):
    """model, its plain Keras BatchNormalization layers trained with the fused kernel (a model
    file tfvision wrote, loaded to be trained further, gets back the speed it was built with)."""
    for layer in all_layers(model):
        if type(layer) is keras.layers.BatchNormalization:
            layer.__class__ = FusedBatchNormalization
    return model
