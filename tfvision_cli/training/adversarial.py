"""Adversarial examples (graph-friendly, for robustness.py and for training) and adversarial
training (`train --adversarial fgsm:EPS|pgd:EPS`).

Attacks are untargeted and L-inf, with epsilon a share of the pixel range, on the model's float
path (the pixels as floats before its own rescaling). Training mixes adversarial examples made
on the fly into each batch (`--adversarial-share`, default half): FGSM with a random start and a
step of 1.25 eps ("Fast is better than free", Wong et al. 2020) or PGD with a random start and
7 steps of 2.5 eps / 7 (Madry et al. 2018). The adversarial images are rounded to 8 bits: they
are images the model could be shown.
"""

from __future__ import annotations

TRAIN_PGD_STEPS = 7


def loss_gradient(forward, x, y):
    """d cross-entropy / d x, for one-hot (or soft) labels y or integer labels."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    with tf.GradientTape() as tape:
        tape.watch(x)
        probs = forward(x)
        if y.shape.rank == 1:
            loss = -tf.math.log(tf.gather(probs, y, batch_dims=1) + 1e-12)
        else:
            loss = -tf.reduce_sum(tf.cast(y, probs.dtype) * tf.math.log(probs + 1e-12), axis=-1)
    return tape.gradient(loss, x)


def perturb(
    forward,
    x0,
    y,
    kind: str,
    eps: float,
    steps: int = 10,
    seed: int = 0,
    random_start: bool | None = None,
    step: float | None = None,
):
    """Adversarial float images (0..255) near x0 (float 0..255), within eps * 255 in L-inf."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    radius = 255.0 * eps
    if eps == 0:
        return x0
    start = kind == "pgd" if random_start is None else random_start
    x = x0
    if start:
        noise = tf.random.stateless_uniform(
            tf.shape(x0), seed=[seed, 1], minval=-radius, maxval=radius
        )
        x = tf.clip_by_value(x0 + noise, 0, 255)
    n, size = (1, step or radius) if kind == "fgsm" else (steps, step or 2.5 * radius / steps)
    for _ in range(n):
        x = x + size * tf.sign(loss_gradient(forward, x, y))
        x = tf.clip_by_value(tf.clip_by_value(x, x0 - radius, x0 + radius), 0, 255)
    return x


def trainer(model, kind: str, eps: float, share: float):
    """model wrapped so that fit() trains on batches with adversarial examples mixed in."""
    import keras

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    from tfvision_cli.models.paths import float_path

    rest, stem = float_path(model)

    class AdversarialTraining(keras.Model):
        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner_model = inner

        def call(self, x, training=None):
            return self.inner_model(x, training=training)

        def train_step(self, data):
            x, y, weights = keras.utils.unpack_x_y_sample_weight(data)
            n = tf.shape(x)[0]
            # the first k of a shuffled batch, a random subset, are attacked; only they are
            # computed (an attack costs one or TRAIN_PGD_STEPS gradients an image)
            k = tf.cast(tf.round(share * tf.cast(n, tf.float32)), tf.int32)
            fgsm = kind == "fgsm"
            # a new random start every step (a fixed one is a pattern the model can learn)
            step_seed = tf.cast(self.optimizer.iterations, tf.int32)
            adv = perturb(
                lambda v: rest(stem(v), training=False),
                tf.cast(x[:k], tf.float32),
                y[:k],
                kind,
                eps,
                steps=TRAIN_PGD_STEPS,
                seed=step_seed,
                random_start=True,
                step=1.25 * 255.0 * eps if fgsm else None,
            )
            mixed = tf.concat([tf.cast(tf.round(adv), x.dtype), x[k:]], axis=0)
            return super().train_step((mixed, y, weights) if weights is not None else (mixed, y))

    wrapper = AdversarialTraining(model, name="adversarial_training")
    wrapper.build(model.input_shape)  # BackupAndRestore needs it built
    return wrapper
