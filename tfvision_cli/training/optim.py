"""Optimizers and learning-rate schedules from the run configuration."""

from __future__ import annotations

from tfvision_cli.config import TrainConfig


def learning_rate(config: TrainConfig, steps_per_epoch: int, replicas: int = 1):
    """A float or a keras LearningRateSchedule over optimizer steps.

    Learning-rate rule: `learning_rate` is for one replica's batch; with N replicas the
    global batch is N times larger and the rate is scaled linearly by N (Goyal et al. 2017).
    constant: lr (after an optional linear warm-up from 0).
    cosine: linear warm-up from 0 over warmup_epochs, then cosine decay to 0.
    one-cycle: rise from lr/25 over max(warmup_epochs, 25% of training), then cosine to lr/1e4.
    """
    import keras

    peak = float(config.learning_rate) * replicas
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if config.schedule == "constant" and warmup == 0:
        return peak
    if config.schedule == "one-cycle":
        warmup = min(max(warmup, int(0.25 * total)), total - 1)
        start, alpha = peak / 25.0, 1e-4
    else:
        start, alpha = 0.0, 0.0
    if config.schedule == "constant":
        alpha = 1.0  # flat after the warm-up
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=start if warmup else peak,
        decay_steps=max(1, total - warmup),
        alpha=alpha,
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int, replicas: int = 1):
    import keras

    lr = learning_rate(config, steps_per_epoch, replicas)
    wd = float(config.weight_decay) or None
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=wd if wd is not None else 1e-4)
    if config.optimizer == "nadam":
        return keras.optimizers.Nadam(lr, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, weight_decay=wd)
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=wd)
