"""The data stages: TensorFlow set up, paths resolved, the dataset opened (downloaded if
needed), split, the epochs chosen from its size, and tf.data pipelines."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli import finetune
from tfvision_cli.config import TrainConfig
from tfvision_cli.errors import UsageError

Emit = Callable[..., None]


def setup_tensorflow(config: TrainConfig):
    """Import TensorFlow and Keras; seeds, determinism and precision policy from config."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    import keras

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.mixed_precision:
        gpus = tf.config.list_physical_devices("GPU")
        keras.mixed_precision.set_global_policy("mixed_float16" if gpus else "mixed_bfloat16")
    return tf, keras


def resolve_paths(config: TrainConfig) -> TrainConfig:
    """config with the dataset folder and model files made absolute, so that the run finds
    them from any directory (resuming, evaluating, exporting)."""
    from tfvision_cli.data.catalog import is_path_spec

    def absolute(text: str) -> str:
        return str(Path(text).expanduser().resolve())

    changes = {}
    if is_path_spec(config.dataset):
        changes["dataset"] = absolute(config.dataset)
    if config.model.endswith(".keras"):
        changes["model"] = absolute(config.model)
    if config.init_from:  # the file itself: `latest` would mean another run tomorrow
        changes["init_from"] = absolute(str(finetune.source_file(config.init_from)))
    return dataclasses.replace(config, **changes)


def open_data(config: TrainConfig, emit: Emit):
    """The dataset, downloaded through TFDS first when it is not prepared yet."""
    from tfvision_cli.data.catalog import open_dataset

    def open_it():
        size = tuple(config.image_size) if config.image_size else None
        return open_dataset(config.dataset, data_dir=config.data_dir, image_size=size)

    dataset = open_it()
    if not dataset.is_available():
        emit("download", name=config.dataset)
        dataset.ensure_available()  # fails fast, with the offline hint
        dataset = open_it()
    return dataset


@dataclass
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    notes: dict


def load_splits(dataset, config: TrainConfig) -> Splits:
    """Train/validation/test arrays. Validation comes out of train (seeded, stratified) unless
    the dataset has its own; the test split is never used to choose anything."""
    from tfvision_cli.data.base import stratified_split

    if not dataset.has_split("train"):
        raise UsageError(f"dataset {dataset.info.name} has no train split")
    notes = {}
    x, y = dataset.arrays("train")
    if dataset.has_split("test"):
        test = dataset.arrays("test")
    else:
        parts = stratified_split(y, {"test": 0.1}, seed=0)
        test = (x[parts["test"]], y[parts["test"]])
        x, y = x[parts["train"]], y[parts["train"]]
        notes["test_split"] = "10% of train (stratified, seed 0): the dataset has no test split"
    val = None
    if dataset.has_split("validation"):
        val = dataset.arrays("validation")
        notes["validation"] = "the dataset's own validation split"
    elif config.validation_split > 0:
        parts = stratified_split(y, {"validation": config.validation_split}, config.seed)
        val = (x[parts["validation"]], y[parts["validation"]])
        x, y = x[parts["train"]], y[parts["train"]]
        notes["validation"] = (
            f"{config.validation_split:.0%} of train (stratified, seed {config.seed})"
        )
    failures = dataset.info.extra.get("failures")
    if failures:  # a raw folder's unreadable files, each named
        notes["skipped_files"] = failures
    return Splits((x, y), val, test, notes)


@dataclass
class Pipelines:
    train: object  # tf.data.Dataset of (uint8 images, one-hot labels)
    val: object | None
    test: object
    global_batch: int
    steps: int  # training steps per epoch
    class_weight: dict[int, float] | None = None
    repeated: bool = False  # the training data repeats: epochs are `steps` long


def build_pipelines(splits: Splits, info, config: TrainConfig, replicas: int) -> Pipelines:
    """tf.data pipelines batched with the global batch (per-replica batch x replicas)."""
    from tfvision_cli.data.pipeline import augmenter, flips_make_sense, make_dataset, mixer

    n_classes = info.num_classes
    shape = splits.train[0].shape[1:]
    global_batch = config.batch_size * replicas
    steps = math.ceil(len(splits.train[1]) / global_batch)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    augment = augmenter(
        config.augment, flips_make_sense(info.name, info.class_names, shape[2]), config.seed,
        config.augment_magnitude, config.random_erasing,
    )  # fmt: skip
    train = make_dataset(
        *splits.train,
        n_classes,
        global_batch,
        shuffle=True,
        seed=config.seed,
        augment=augment,
        repeat=config.steps_per_epoch is not None,
        mix=mixer(config.mixup, config.cutmix, config.seed),
    )
    val = make_dataset(*splits.val, n_classes, global_batch) if splits.val else None
    test = make_dataset(*splits.test, n_classes, global_batch)
    weights = (
        class_weights(splits.train[1], n_classes) if config.class_weight == "balanced" else None
    )
    return Pipelines(
        train, val, test, global_batch, steps, weights, config.steps_per_epoch is not None
    )


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """'balanced' weights, as scikit-learn's: total / (classes x count of the class)."""
    counts = np.bincount(labels, minlength=n_classes)
    return {c: float(len(labels) / (n_classes * n)) if n else 0.0 for c, n in enumerate(counts)}


# Every dataset gets at least the optimizer steps the default recipe takes on MNIST (4 epochs of
# 422 steps = 1,688): a smaller dataset gets more epochs of fewer steps, not fewer steps.
STEP_BUDGET = 1600
EPOCHS_RANGE = (4, 40)


def choose_epochs(config: TrainConfig, n_train: int, replicas: int) -> TrainConfig:
    """config with epochs decided from the data when none were given (config.epochs None)."""
    if config.epochs is not None:
        return config
    low, high = EPOCHS_RANGE
    steps = math.ceil(n_train / (config.batch_size * replicas))
    if config.steps_per_epoch:  # a quick trial keeps its few steps
        return dataclasses.replace(config, epochs=low)
    epochs = min(high, max(low, math.ceil(STEP_BUDGET / max(steps, 1))))
    return dataclasses.replace(config, epochs=epochs)


def describe_data(info, splits: Splits, pipes: Pipelines) -> dict:
    """What the run trains on, for the "data" event."""
    return {
        "name": info.name,
        "shape": tuple(int(d) for d in splits.train[0].shape[1:]),
        "classes": info.num_classes,
        "train": len(splits.train[1]),
        "val": len(splits.val[1]) if splits.val else 0,
        "test": len(splits.test[1]),
        "global_batch": pipes.global_batch,
        "steps": pipes.steps,
    }
