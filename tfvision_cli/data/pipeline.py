"""tf.data input pipelines for training and evaluation."""

from __future__ import annotations

import numpy as np

from tfvision_cli.tf_import import tf as import_tf

# Datasets whose images must never be mirrored (digits, text, house numbers).
NO_FLIP = ("mnist", "kmnist", "emnist", "digits", "svhn", "omniglot")


def flips_make_sense(dataset_name: str, class_names: list[str], channels: int) -> bool:
    """Horizontal flips for natural colour photos only: never for digits or characters."""
    name = dataset_name.lower()
    if channels != 3 or any(n in name for n in NO_FLIP):
        return False
    return not all(c.strip().isdigit() for c in class_names)


def augmenter(level: str, allow_flip: bool, seed: int):
    """A Keras Sequential of random layers for a level (none -> None), run in tf.data."""
    if level == "none":
        return None
    import keras
    from keras import layers

    strength = {"light": (0.08, 0.03, 0.08), "standard": (0.1, 0.05, 0.1)}[level]
    shift, rotate, zoom = strength
    parts = [
        layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed),
        layers.RandomRotation(rotate, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
    ]
    if level == "standard" and allow_flip:
        parts.insert(0, layers.RandomFlip("horizontal", seed=seed + 3))
    return keras.Sequential(parts, name=f"augment_{level}")


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    augment=None,
    one_hot: bool = True,
    repeat: bool = False,
):
    """(uint8 images, one-hot float labels) batches; shuffled each epoch when training."""
    tf = import_tf()
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    if augment is not None:

        def apply(x, y):
            x = augment(tf.cast(x, tf.float32), training=True)
            return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y

        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    if one_hot:
        ds = ds.map(
            lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
        )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
