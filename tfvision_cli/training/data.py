"""The data stages: TensorFlow set up, paths resolved, the dataset opened (downloaded if
needed), split, the epochs chosen from its size, and tf.data pipelines."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.config import TrainConfig
from tfvision_cli.data.base import MEMORY_BUDGET, Stream
from tfvision_cli.errors import UsageError
from tfvision_cli.training import finetune

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
    """Train/validation/test: (images, labels) arrays in memory, or Streams read from disk."""

    train: tuple[np.ndarray, np.ndarray] | Stream
    val: tuple[np.ndarray, np.ndarray] | Stream | None
    test: tuple[np.ndarray, np.ndarray] | Stream
    notes: dict
    shape: tuple[int, int, int]
    cache: str = "memory"  # memory, disk or none (streamed)

    def final_notes(self) -> dict:
        """notes, with the files that failed to decode while streamed added to those the
        listing found unreadable."""
        late = [
            f
            for part in (self.train, self.val, self.test)
            if isinstance(part, Stream)
            for f in part.skipped
        ]
        known = self.notes.get("skipped_files", [])
        late = [f for f in dict.fromkeys(late) if f not in known]
        if late:
            self.notes["skipped_files"] = [*known, *late]
        return self.notes


def size(part) -> int:
    """The examples in a split, in memory or streamed (a carved TFDS stream's: estimated)."""
    return part.count if isinstance(part, Stream) else len(part[1])


def choose_cache(config: TrainConfig, dataset, workers: int = 1) -> str:
    """memory, disk or none: --cache, with auto decided from the decoded size. A source that
    lives in memory anyway (built-in datasets) is always memory; several workers stream, each
    its own files, so that no worker holds (or serializes) the whole dataset."""
    if dataset.stream(next(iter(dataset.info.splits))) is None:
        return "memory"
    if config.cache != "auto":
        return config.cache
    total = sum(dataset.decoded_bytes(split) for split in dataset.info.splits)
    return "memory" if workers == 1 and total <= MEMORY_BUDGET else "none"


def load_splits(dataset, config: TrainConfig, workers: int = 1) -> Splits:
    """Train/validation/test splits. Validation comes out of train (seeded, stratified) unless
    the dataset has its own; the test split is never used to choose anything."""
    if not dataset.has_split("train"):
        raise UsageError(f"dataset {dataset.info.name} has no train split")
    cache = choose_cache(config, dataset, workers)
    if cache != "memory":
        return _stream_splits(dataset, config, cache)
    from tfvision_cli.data.base import stratified_split

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
    return Splits((x, y), val, test, notes, tuple(int(d) for d in x.shape[1:]))


def _stream_splits(dataset, config: TrainConfig, cache: str) -> Splits:
    """The splits as Streams: read from disk while training, never whole in memory."""
    hashed = dataset.info.source in ("tfds", "prepared")
    how = "by a hash of each record" if hashed else "stratified"
    notes = {"cache": cache}
    carve: tuple = ()
    if dataset.has_split("test"):
        test = dataset.stream("test")
    else:
        test = dataset.stream("train", ((0.1, 0, True),))
        carve = ((0.1, 0, False),)
        notes["test_split"] = f"10% of train ({how}, seed 0): the dataset has no test split"
    val = None
    if dataset.has_split("validation"):
        val = dataset.stream("validation")
        notes["validation"] = "the dataset's own validation split"
    elif config.validation_split > 0:
        share = (config.validation_split, config.seed)
        val = dataset.stream("train", (*carve, (*share, True)))
        carve = (*carve, (*share, False))
        notes["validation"] = f"{config.validation_split:.0%} of train ({how}, seed {config.seed})"
    train = dataset.stream("train", carve)
    failures = dataset.info.extra.get("failures")
    if failures:
        notes["skipped_files"] = failures
    return Splits(train, val, test, notes, tuple(dataset.info.image_shape), cache)


@dataclass
class Pipelines:
    train: object  # tf.data.Dataset of (uint8 images, one-hot labels)
    val: object | None
    test: object
    global_batch: int
    steps: int  # training steps per epoch
    class_weight: dict[int, float] | None = None
    repeated: bool = False  # the training data repeats: epochs are `steps` long


def build_pipelines(
    splits: Splits, info, config: TrainConfig, replicas: int, placement=None, scratch=None
) -> Pipelines:
    """tf.data pipelines batched with the global batch (per-replica batch x replicas).

    Streamed splits are read by each worker of a cluster from its own files (placement);
    --cache disk keeps their decoded images in files under scratch."""
    from tfvision_cli.data.pipeline import augmenter, flips_make_sense, make_dataset, mixer

    n_classes = info.num_classes
    shape = splits.shape
    global_batch = config.batch_size * replicas
    steps = math.ceil(size(splits.train) / global_batch)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    augment = augmenter(
        config.augment,
        flips_make_sense(info.name, info.class_names, shape[2]),
        config.seed,
        config.augment_magnitude,
        config.random_erasing,
    )
    workers = placement.num_workers if placement is not None else 1
    streamed = splits.cache != "memory"
    shard = (placement.worker_index, workers) if streamed and workers > 1 else None
    repeated = config.steps_per_epoch is not None or streamed  # epochs are `steps` long

    def cache_file(name: str) -> str | None:
        return str(Path(scratch) / name) if splits.cache == "disk" and scratch else None

    train = make_dataset(
        splits.train,
        n_classes,
        global_batch,
        shuffle=True,
        seed=config.seed,
        augment=augment,
        repeat=repeated,
        mix=mixer(config.mixup, config.cutmix, config.seed),
        shard=shard,
        cache_file=cache_file("train"),
    )

    def evaluation(part, name):
        return make_dataset(part, n_classes, global_batch, shard=shard, cache_file=cache_file(name))

    val = evaluation(splits.val, "validation") if splits.val is not None else None
    test = evaluation(splits.test, "test")
    weights = None
    if config.class_weight == "balanced":
        weights = class_weights(_labels(splits.train), n_classes)
    return Pipelines(train, val, test, global_batch, steps, weights, repeated)


def _labels(part) -> np.ndarray:
    labels = part.labels if isinstance(part, Stream) else part[1]
    if labels is None:
        raise UsageError(
            "--class-weight balanced needs every training label: with a streamed TFDS dataset, "
            "add --cache memory"
        )
    return labels


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


# On small data (data/pipeline.py's is_small_data: fewer than 5,000 training images a class, of
# 16x16 or more) the default model overfits (on 20,000 grey 28x28 images of 10 classes, 94.5%
# train against 90.0% validation accuracy), so the recipe adapts, as the epochs do
# (benchmarks/RESULTS.md, "Small datasets"): random shifts of up to 2 pixels (--augment auto ->
# shift; an affine warp, `light`, cost 27% of the step time on 2 cores, a shift a few percent)
# and fastnet at width 24 (0.6x the FLOPs: on a 2,000-a-class MNIST tree 99.04-99.08% in 58 s
# against 99.10% in 72 s at width 32, and the Keras example's 98.40% in 64 s). MNIST (5,400 a
# class) keeps the default recipe.
SMALL_DATA_WIDTH = 24


def adapt_to_data(
    config: TrainConfig, n_train: int, shape, n_classes: int, replicas: int = 1
) -> TrainConfig:
    """config with what the data decides: --augment auto (shift on small data, else none),
    the default model's width (24 on small data unless --model-option width says) and the
    batches per call (steps_per_execution). Recorded in config.yaml like the epochs."""
    from tfvision_cli.data.pipeline import is_small_data, resolve_augment

    small = is_small_data(n_train, shape, n_classes)
    changes: dict = {
        "augment": resolve_augment(config.augment, n_train, shape, n_classes),
        "steps_per_execution": steps_per_execution(config, shape, replicas),
    }
    if small and config.model == "fastnet" and "width" not in config.model_options:
        changes["model_options"] = {**config.model_options, "width": SMALL_DATA_WIDTH}
    return dataclasses.replace(config, **changes)


# benchmarks/RESULTS.md (issue 37): fastnet_s at batch 256 on 2 cores trained at 5,010 images/s
# with 1 batch per call and 8,900-9,400 with 8 (Keras waits for each call's results in Python);
# 4 or 32 were no better than 8 in the whole command
SMALL_BATCH_VALUES = 600_000
SMALL_STEPS_PER_EXECUTION = 8


def steps_per_execution(config: TrainConfig, shape, replicas: int = 1) -> int:
    """--steps-per-execution, or from the size of a batch: short steps (small images) on one
    device are grouped so that the cost of each call into TensorFlow is paid once per 8
    batches. Several replicas keep 1: a multi-worker cluster's grouped step fails on
    TensorFlow 2.21 (InvalidArgumentError), and several GPUs are not measured here."""
    if config.steps_per_execution is not None:
        return config.steps_per_execution
    values = config.batch_size * math.prod(int(d) for d in shape)
    small = values <= SMALL_BATCH_VALUES and replicas == 1
    return SMALL_STEPS_PER_EXECUTION if small else 1


def chosen_from_data(before: TrainConfig, after: TrainConfig, steps: int) -> str | None:
    """What the data decided, in words, for one line of output; None when nothing."""
    parts = []
    if before.epochs is None:
        parts.append(f"{after.epochs} epochs (a budget of {STEP_BUDGET:,} steps of {steps})")
    if before.augment == "auto":
        parts.append(f"augment {after.augment}")
    if after.model_options.get("width") != before.model_options.get("width"):
        parts.append(f"{after.model} width {after.model_options['width']} (small data)")
    return ", ".join(parts) or None


def describe_data(info, splits: Splits, pipes: Pipelines) -> dict:
    """What the run trains on, for the "data" event."""
    return {
        "name": info.name if info.source != "packaged" else f"{info.name} ({info.description})",
        "shape": splits.shape,
        "classes": info.num_classes,
        "train": size(splits.train),
        "val": size(splits.val) if splits.val is not None else 0,
        "test": size(splits.test),
        "global_batch": pipes.global_batch,
        "steps": pipes.steps,
    }
