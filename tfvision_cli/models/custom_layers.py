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
