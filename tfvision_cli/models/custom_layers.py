"""tfvision's own Keras layers. Imports Keras at module level: import this module lazily.

Registered as serialisable, so `.keras` files load with safe_mode on once this is imported.
"""

import keras


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
