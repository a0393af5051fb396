"""The model stages: build (registry, file, --init-from), compile, freeze a backbone, keep
the best weights with valid BatchNorm statistics, and the test report."""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from tfvision_cli.compat.keras_multi_worker import multi_worker_fit
from tfvision_cli.config import TrainConfig
from tfvision_cli.models.io import load_weights
from tfvision_cli.models.summary import all_layers
from tfvision_cli.runs import RunDir
from tfvision_cli.training import finetune
from tfvision_cli.training.data import Pipelines

Emit = Callable[..., None]


def build_model(config: TrainConfig, shape, class_names: list[str], placement, steps: int):
    """The model (from the registry, or a .keras file), started from --init-from's weights if
    given, compiled inside the strategy's scope. Returns (model, notes for metrics.json)."""
    from tfvision_cli.models.registry import create_model
    from tfvision_cli.models.regularizers import regularize

    notes = {}
    n_classes = len(class_names)
    with placement.strategy.scope():
        options = dict(config.model_options)
        if config.pretrained:
            options["pretrained"] = True
        if finetune.is_model_file(config.model):
            model = finetune.model_from_file(config.model, shape, n_classes)
        else:
            model = create_model(config.model, shape, n_classes, **options)
        if config.l1 or config.l2:
            model, count = regularize(model, config.l1, config.l2)
            notes["regularized_kernels"] = count
        if config.init_from:
            notes.update(finetune.init_weights(model, config.init_from, class_names))
        if placement.replicas > 1:
            synchronize_batch_norm(model)
    compile_model(model, config, steps, placement)
    return model, notes


def compile_model(model, config: TrainConfig, steps: int, placement) -> None:
    """Compile (again, after freezing or unfreezing layers) with a fresh optimizer."""
    import keras

    from tfvision_cli.training.optim import make_optimizer

    with placement.strategy.scope():
        model.compile(
            optimizer=make_optimizer(config, steps, placement.replicas),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            # "ce": cross-entropy without label smoothing, the loss reported for the test split
            metrics=[
                keras.metrics.CategoricalAccuracy(name="accuracy"),
                keras.metrics.CategoricalCrossentropy(name="ce"),
            ],
            steps_per_execution=config.steps_per_execution or 1,
            jit_compile=config.xla,
        )
        # Keras builds the optimizer inside the first trace of the train step when no strategy
        # was set explicitly; its slot variables created there make TensorFlow trace the step
        # a second time (about 1 s of the first step here)
        model.optimizer.build(model.trainable_variables)


@contextlib.contextmanager
def frozen_backbone(model) -> Iterator[list[str]]:
    """Within the block, the backbone does not train: the keras.applications model nested in
    model, else every weighted layer before the last (the head). Yields the frozen names."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    frozen = nested or [layer for layer in model.layers if layer.weights][:-1]
    saved = [layer.trainable for layer in frozen]
    for layer in frozen:
        layer.trainable = False
    try:
        yield [layer.name for layer in frozen]
    finally:
        for layer, trainable in zip(frozen, saved, strict=True):
            layer.trainable = trainable


def synchronize_batch_norm(model) -> None:
    """With several replicas, BatchNorm normalises with the statistics of the global batch, so
    that its moving averages (and so every weight) stay identical on every replica and worker."""
    import keras

    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


# Below this many optimizer steps, BatchNorm's moving statistics (an exponential average over
# the last ~1/(1-momentum) steps of fast-changing weights) do not describe the final weights: a
# 20-step trial scored 0.11 on MNIST's test split with them, 0.78 in training mode. Measured
# gain in validation accuracy (benchmarks/RESULTS.md): +8.8 points at 50 steps, +0.20 at 100,
# +0.02 at 200, noise beyond; it costs ~1.3 s, so only runs shorter than 200 steps get it.
SHORT_RUN_STEPS = 200
RECALIBRATION_BATCHES = 50


def best_weights(model, callbacks, run: RunDir) -> None:
    """Put the best epoch's weights (what model.keras holds) into model."""
    if callbacks.best.best_weights is not None:
        model.set_weights(callbacks.best.best_weights)
    elif run.model.is_file():  # the best epoch was in an earlier session of a resumed run
        load_weights(model, run.model)


def recalibrate_batch_norm(model, batches) -> int:
    """Replace every BatchNorm layer's moving mean and variance by their average over batches
    of training data run through the final weights ("precise BN"); returns the batches used.
    Nothing else changes: no gradient is taken.

    With momentum 0 a training-mode call leaves each layer's moving statistics equal to that
    batch's; one compiled function runs the batch and reads them: 1.2 s with its trace for 50
    batches of 256 on the default model, against 2.6 s for a Python loop of eager calls."""
    import keras

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    layers = [
        layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not layers:
        return 0

    @tf.function(reduce_retracing=True)
    def batch_statistics(images):
        model(images, training=True)
        return [
            (tf.identity(layer.moving_mean), tf.identity(layer.moving_variance)) for layer in layers
        ]

    saved = [layer.momentum for layer in layers]
    sums = [(0.0, 0.0)] * len(layers)  # each batch weighed by its size
    seen = used = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        for images, _ in batches:
            n = int(images.shape[0])
            stats = batch_statistics(images)
            sums = [
                (a + n * m.numpy().astype(np.float64), b + n * v.numpy().astype(np.float64))
                for (a, b), (m, v) in zip(sums, stats, strict=True)
            ]
            seen, used = seen + n, used + 1
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    if used:
        for layer, (mean_sum, variance_sum) in zip(layers, sums, strict=True):
            layer.moving_mean.assign(mean_sum / seen)
            layer.moving_variance.assign(variance_sum / seen)
    return used


def finish_model(model, pipelines: Pipelines, callbacks, run: RunDir, config, placement) -> dict:
    """The model to keep: the best epoch's weights, with BatchNorm statistics recomputed after a
    short run when that does not make the validation accuracy worse (model.keras is saved
    again with them). Returns notes for metrics.json."""
    from tfvision_cli.models.io import save_model

    best_weights(model, callbacks, run)
    if config.epochs * pipelines.steps >= SHORT_RUN_STEPS or placement.replicas > 1:
        return {}
    # the monitored data: validation, else training batches (never the test split)
    reference = pipelines.val or pipelines.train.take(RECALIBRATION_BATCHES)
    kept = model.get_weights()
    # fit measured the best epoch's validation accuracy itself (the same weights, data, metric)
    measured = pipelines.val is not None and callbacks.best.best_weights is not None
    before = round(callbacks.best.best, 6) if measured else _accuracy(model, reference)
    used = recalibrate_batch_norm(model, pipelines.train.take(RECALIBRATION_BATCHES))
    if not used:
        return {}
    after = _accuracy(model, reference)
    note = {"batch_norm_recalibration": {"batches": used, "before": before, "after": after}}
    if after < before:
        model.set_weights(kept)
        note["batch_norm_recalibration"]["kept"] = False
        return note
    note["batch_norm_recalibration"]["kept"] = True
    if placement.is_chief and run.model.is_file():
        save_model(model, run.model)
    return note


def _accuracy(model, batches) -> float:
    with open_length():
        scores = model.evaluate(batches, verbose=0, return_dict=True)
    return round(float(scores["accuracy"]), 6)


@contextlib.contextmanager
def open_length() -> Iterator[None]:
    """Keras warns "Your input ran out of data" at the end of every pass over a streamed split
    whose length tf.data does not know (a carved part's is open); training data always has a
    known length or repeats, so within tfvision the warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
        yield


def test_report(model, pipelines: Pipelines, placement) -> dict:
    """The model evaluated on the test split."""
    with multi_worker_fit(placement.strategy), open_length():
        scores = model.evaluate(pipelines.test, verbose=0, return_dict=True)
    return {
        "test_accuracy": round(float(scores["accuracy"]), 6),
        "test_loss": round(float(scores["ce"]), 6),
    }


def weights_digest(model) -> str:
    """sha256 of every weight's bytes, in order: equal digests, identical models."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
