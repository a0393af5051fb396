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


# Small data: fewer than this many training images per class, of at least 16x16 pixels, where
# the default model overfits; `--augment auto` shifts there (benchmarks/RESULTS.md, "Small
# datasets"). On the 8x8 digits a one-pixel shift is an eighth of the image.
SMALL_DATA_PER_CLASS = 5000
SMALL_DATA_MIN_SIDE = 16


def is_small_data(n_train: int, shape, n_classes: int) -> bool:
    few = n_train < SMALL_DATA_PER_CLASS * max(n_classes, 1)
    return few and min(shape[0], shape[1]) >= SMALL_DATA_MIN_SIDE


def resolve_augment(level: str, n_train: int, shape, n_classes: int) -> str:
    """--augment as it applies to this data: `auto` is shift on small data, else none."""
    if level != "auto":
        return level
    return "shift" if is_small_data(n_train, shape, n_classes) else "none"


def augmenter(
    level: str, allow_flip: bool, seed: int, magnitude: float = 0.1, erasing: float = 0.0
):
    """A Keras Sequential of random layers for a level (none -> None), run in tf.data on
    float images in 0..255, then random erasing with probability `erasing`."""
    if level not in ("none", "shift", "light", "standard", "randaugment"):
        raise ValueError(f"augmentation {level!r}: resolve 'auto' with resolve_augment first")
    if level == "none" and not erasing:
        return None
    import keras
    from keras import layers

    parts = _geometric(level, allow_flip, seed, magnitude) if level != "shift" else []
    if erasing:
        parts.append(layers.RandomErasing(factor=erasing, value_range=(0, 255), seed=seed + 4))
    rest = keras.Sequential(parts, name=f"augment_{level}") if parts else None
    if level != "shift":
        return rest
    shift = RandomShift(SHIFT_FRACTION, seed)
    return shift if rest is None else lambda x, training=True: rest(shift(x), training=training)


# --augment shift moves each image by up to this share of its side (2 pixels at 28x28)
SHIFT_FRACTION = 0.08


class RandomShift:
    """Each image of a batch moved by a whole number of pixels, up to `fraction` of its side
    in each direction, the uncovered border black: the "pad and random crop" of the CIFAR
    literature. Two gathers on the uint8 batch (no float round trip, no interpolation): on two
    cores the training step and tf.data share the CPU, and an affine warp (`light`) cost the
    default recipe 27% of its step time where this costs a few percent."""

    takes_uint8 = True  # make_dataset applies it to the uint8 batch as it is

    def __init__(self, fraction: float, seed: int):
        self.fraction, self.seed = fraction, seed

    def __call__(self, x, training=True):
        tf = import_tf()
        h, w = int(x.shape[1]), int(x.shape[2])
        pad_h, pad_w = max(1, round(self.fraction * h)), max(1, round(self.fraction * w))
        padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
        batch = tf.shape(x)[0]
        dy = tf.random.uniform([batch, 1], 0, 2 * pad_h + 1, tf.int32, seed=self.seed)
        dx = tf.random.uniform([batch, 1], 0, 2 * pad_w + 1, tf.int32, seed=self.seed + 1)
        rows = tf.gather(padded, dy + tf.range(h)[None], axis=1, batch_dims=1)
        return tf.gather(rows, dx + tf.range(w)[None], axis=2, batch_dims=1)


def _geometric(level: str, allow_flip: bool, seed: int, magnitude: float) -> list:
    from keras import layers

    if level == "none":
        return []
    if level == "randaugment":  # its ops never mirror: safe for digits at a small magnitude
        return [layers.RandAugment(value_range=(0, 255), factor=magnitude, seed=seed)]
    strength = {"light": (0.08, 0.03, 0.08), "standard": (0.1, 0.05, 0.1)}[level]
    shift, rotate, zoom = strength
    parts = [
        layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed),
        layers.RandomRotation(rotate, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
    ]
    if level == "standard" and allow_flip:
        parts.insert(0, layers.RandomFlip("horizontal", seed=seed + 3))
    return parts


def mixer(mixup: float, cutmix: float, seed: int):
    """(uint8 images, one-hot labels) -> the batch with MixUp or CutMix applied (one of the
    two, at random, when both are on), labels soft and summing to 1; None when both are 0."""
    if not (mixup or cutmix):
        return None
    import keras

    tf = import_tf()
    mix = keras.layers.MixUp(alpha=mixup, seed=seed + 5) if mixup else None
    cut = keras.layers.CutMix(factor=cutmix, seed=seed + 6) if cutmix else None

    def apply(layer, x, y):
        out = layer({"images": tf.cast(x, tf.float32), "labels": y}, training=True)
        images = tf.cast(tf.clip_by_value(tf.round(out["images"]), 0, 255), tf.uint8)
        return images, tf.cast(out["labels"], tf.float32)

    def both(x, y):
        if mix is None or cut is None:
            return apply(mix or cut, x, y)
        coin = tf.random.uniform([], seed=seed + 7)
        return tf.cond(coin < 0.5, lambda: apply(mix, x, y), lambda: apply(cut, x, y))

    return both


# A streamed split is shuffled through a buffer of at most this many decoded images and bytes
# (but at least 1,024 images; the files' order is shuffled as well, so the buffer only has to
# mix neighbours); each new iterator fills it before its first batch. 128 MiB cost 0.2-0.26 GB
# more peak RSS than 32 MiB on 128x128 RGB images (benchmarks/RESULTS.md).
SHUFFLE_BYTES = 32 << 20
SHUFFLE_EXAMPLES = 10_000


def make_dataset(
    source,
    num_classes: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    augment=None,
    one_hot: bool = True,
    repeat: bool = False,
    mix=None,
    shard: tuple[int, int] | None = None,
    cache_file: str | None = None,
):
    """(uint8 images, one-hot float labels) batches; shuffled each epoch when training.

    source: (images, labels) arrays in memory, or a data.base.Stream read from disk (shard:
    this worker's (index, count) of its files; cache_file: decoded images kept in that file
    after the first pass)."""
    from tfvision_cli.data.base import Stream

    tf = import_tf()
    if isinstance(source, Stream):
        ds = source.open(shuffle=shuffle and cache_file is None, seed=seed, shard=shard)
        if cache_file is not None:
            ds = ds.cache(cache_file)
        if shuffle:
            image_bytes = max(1, int(np.prod(ds.element_spec[0].shape)))
            buffer = min(source.count, SHUFFLE_EXAMPLES, max(1024, SHUFFLE_BYTES // image_bytes))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        images, labels = source
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        if shuffle:
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    if augment is not None and getattr(augment, "takes_uint8", False):
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    elif augment is not None:

        def apply(x, y):
            x = augment(tf.cast(x, tf.float32), training=True)
            return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y

        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    if one_hot:
        ds = ds.map(
            lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
        )
    if mix is not None:  # on one-hot labels: they become soft
        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # No autotuning thread: freeing an iterator could wait for that thread's next wake-up,
    # and the wake-ups double in spacing (10 s apart after 10 s, 20 s after 20 s); 1 run in 4
    # lost 3-17 s at the end of an epoch (benchmarks/RESULTS.md). Parallel maps then use every
    # core (min(16, cores)) and the prefetch buffer keeps tf.data's own grow-when-empty rule.
    options.autotune.enabled = False
    # a sharded stream is already this worker's share: tf.distribute must not shard it again
    # (nor serialize its graph to do so)
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.OFF if shard is not None else policy.DATA
    )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def augment_sample(images: np.ndarray, labels: np.ndarray, num_classes: int, augment, mix):
    """One batch through the training pipeline's augmentation: (uint8 images, soft labels)."""
    ds = make_dataset((images, labels), num_classes, len(labels), augment=augment, mix=mix)
    out_images, out_labels = next(iter(ds))
    return np.asarray(out_images), np.asarray(out_labels)
