"""Why a model decided: gradient maps on the model's float path, written natively on
`tf.GradientTape` (tf-explain is unmaintained since 2022 and breaks on nested Keras 3 models).

Every tfvision model takes uint8 images and rescales them inside (a layer named `rescale` or
`to_float`); gradients are taken with respect to that layer's float output, at the image's
resolution, so they flow from the rescaled input and never through a cast.

- saliency: |d score / d input|, the maximum over channels (Simonyan et al. 2014); with
  `smooth=N`, SmoothGrad's average over N noisy copies (Smilkov et al. 2017).
- integrated gradients: (x - black) times the average gradient along the straight path from a
  black image (Sundararajan et al. 2017), `steps` points.
- Grad-CAM: the last spatial feature map (inside a nested backbone too; for a ViT the patch
  tokens on their grid) weighted by its pooled gradients, ReLU (Selvaraju et al. 2017).
The score is the log-probability of the target class (the predicted one unless given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tfvision_cli.errors import UsageError
from tfvision_cli.models.paths import STEMS, find_stem

if TYPE_CHECKING:  # numpy is imported where it is used: not at `tfvision --help`
    import numpy as np

METHODS = ("saliency", "integrated-gradients", "gradcam")


def score_head(model):
    """(the tensor to cut the model at, a function from it to the class scores explained).

    The scores are those before the softmax, as in Simonyan et al. 2014 and Grad-CAM (their
    gradients are not bent by the other classes' probabilities), when the model ends in a
    Dense softmax (every registry model does); else the log-probabilities."""
    import keras

    head = model.layers[-1]
    if isinstance(head, keras.layers.Dense) and head.activation is keras.activations.softmax:
        return head.input, lambda t: keras.ops.matmul(t, head.kernel) + head.bias
    return model.output, lambda p: keras.ops.log(p + 1e-12)


@dataclass
class Explainer:
    model: object  # the whole Keras model (uint8 in)
    method: str
    steps: int = 32
    smooth: int = 0

    def __post_init__(self):
        import keras

        self.stem = find_stem(self.model)
        cut, self.scores = score_head(self.model)
        self.float_model = keras.Model(self.stem.output, cut)

    def maps(self, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(n, H, W) non-negative maps at the model's input resolution, each summing to 1."""
        import numpy as np

        from tfvision_cli.tf_import import tf as import_tf

        tf = import_tf()
        x = tf.convert_to_tensor(self.stem(images.astype(np.float32)))
        targets = tf.convert_to_tensor(targets.astype(np.int32))
        if self.method == "saliency":
            maps = self._saliency(x, targets)
        elif self.method == "integrated-gradients":
            maps = self._integrated(x, targets)
        else:
            maps = gradcam(self.model, self.stem, x, targets)
        maps = np.maximum(np.asarray(maps, np.float64), 0)
        total = maps.reshape(len(maps), -1).sum(1)[:, None, None]
        # a map of all zeros says nothing: uniform; any other sums to 1, however small it was
        return np.where(total > 0, maps / np.where(total > 0, total, 1.0), 1.0 / maps[0].size)

    def _grads(self, x, targets):
        from tfvision_cli.tf_import import tf as import_tf

        tf = import_tf()
        with tf.GradientTape() as tape:
            tape.watch(x)
            scores = self.scores(self.float_model(x, training=False))
            score = tf.gather(scores, targets, batch_dims=1)
        return tape.gradient(score, x)

    def _saliency(self, x, targets):
        from tfvision_cli.tf_import import tf as import_tf

        tf = import_tf()
        if not self.smooth:
            return tf.reduce_max(tf.abs(self._grads(x, targets)), axis=-1)
        spread = 0.15 * float(tf.reduce_max(x) - tf.reduce_min(x))
        total = 0
        for i in range(self.smooth):
            noise = tf.random.stateless_normal(tf.shape(x), seed=[i, 0]) * spread
            total += tf.abs(self._grads(x + noise, targets))
        return tf.reduce_max(total / self.smooth, axis=-1)

    def _integrated(self, x, targets):
        import numpy as np

        black = self.stem(np.zeros(x.shape, np.float32))
        total = 0
        for alpha in (np.arange(self.steps) + 0.5) / self.steps:  # midpoint rule
            total += self._grads(black + alpha * (x - black), targets)
        attributions = (x - black) * total / self.steps
        return np.abs(np.sum(np.asarray(attributions), axis=-1))


def default_method(model) -> tuple[str, str]:
    """--method auto: (the method that points at the object on this model, why).

    Measured on MNIST (README, RESULTS.md): plain saliency follows the object on stride-1
    convolutions (the Keras example's cnn: 2.14x the strokes' share of the area) but spreads
    over the whole image behind a strided stem (the default fastnet: 0.93x), where Grad-CAM
    still points at it (1.32x) and passes the sanity check; integrated gradients from a black
    baseline score high but fail that check (0.99). A model with no feature map after its
    input (mlp, rnn) has no Grad-CAM: saliency."""
    import keras

    from tfvision_cli.models.summary import all_layers

    layer, _ = _feature_layer(model)
    if layer is None:
        return "saliency", "no feature map after the input for Grad-CAM"
    first = next((x for x in all_layers(model) if isinstance(x, keras.layers.Conv2D)), None)
    stride = max(first.strides) if first is not None else 1
    if stride > 1:
        return "gradcam", f"a stem of stride {stride} spreads plain input gradients"
    return "saliency", "stride-1 convolutions: input gradients follow the object"


def _is_grid(shape) -> bool:
    return len(shape) == 4 and shape[1] is not None and shape[1] > 1


def _feature_layer(model):
    """(the layer whose output Grad-CAM weighs, the nested model holding it or None).

    The last convolutional layer's maps, as Selvaraju et al. weigh (VGG-16's conv5_3 at 14x14,
    not pool5 at 7x7): a pooling layer after them only coarsens the map, a padding layer only
    frames it with zeros. Those are taken only when no other layer holds a grid."""
    import keras

    coarsening = (
        keras.layers.MaxPooling2D,
        keras.layers.AveragePooling2D,
        keras.layers.ZeroPadding2D,
    )
    fallback = None
    for layer in reversed(model.layers):
        if layer.name in STEMS or isinstance(layer, keras.layers.InputLayer):
            break  # the image itself is no feature map (an MLP flattens it at once)
        if isinstance(layer, keras.Model):
            inner, _ = _feature_layer(layer) if len(layer.output.shape) == 2 else (None, None)
            if inner is not None:
                return inner, layer
        if _is_grid(layer.output.shape):
            if not isinstance(layer, coarsening):
                return layer, None
            fallback = fallback or layer
    return fallback, None


def _tokens_after(model, grid_layer):
    """A ViT's last layer of patch tokens (batch, rows x cols, dim) after grid_layer."""
    h, w = grid_layer.output.shape[1:3]
    seen, found = False, None
    for layer in model.layers:
        seen = seen or layer is grid_layer
        shape = layer.output.shape
        if seen and len(shape) == 3 and shape[1] == h * w:
            found = layer
    return found


def gradcam(model, stem, x, targets):
    """Grad-CAM maps (n, H, W) at x's resolution (x: the stem's float output). The parts are
    cut from the whole model's graph (a model made from an inner tensor has its own copy)."""
    import keras

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    layer, nest = _feature_layer(model)
    if layer is None:
        raise UsageError(
            "Grad-CAM needs a spatial layer after the input (a feature map or patch tokens) and "
            "this model has none: use --method saliency or integrated-gradients"
        )
    grid = layer.output.shape[1:3]
    cut, scores = score_head(model)
    if nest is None:
        layer = _tokens_after(model, layer) or layer
        parts = [keras.Model(stem.output, [layer.output, cut])]
    else:  # the feature map lives inside a nested backbone: run the model in three parts
        # the backbone's own input and output tensors belong to its graph, not to the outer one:
        # the outer tensors are those of the call (its node)
        call = nest._inbound_nodes[0]
        parts = [
            keras.Model(stem.output, call.input_tensors[0]),
            keras.Model(nest.inputs, [layer.output, nest.output]),
            keras.Model(call.output_tensors[0], cut),
        ]
    with tf.GradientTape() as tape:
        if nest is None:
            features, before = parts[0](x, training=False)
        else:
            features, pooled = parts[1](parts[0](x, training=False), training=False)
            before = parts[2](pooled, training=False)
        tape.watch(features)
        score = tf.gather(scores(before), targets, batch_dims=1)
    grads = tape.gradient(score, features)
    if len(features.shape) == 3:  # patch tokens back on their grid
        features = tf.reshape(features, (-1, grid[0], grid[1], features.shape[-1]))
        grads = tf.reshape(grads, features.shape)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    # bicubic, as the Keras Grad-CAM example's PIL resize; its overshoot below 0 is cut by maps()
    return tf.image.resize(cam[..., None], x.shape[1:3], method="bicubic")[..., 0]


def randomized(model, share: float, seed: int = 0):
    """A copy of model with the weights of its top `share` of weighted layers re-drawn (the
    cascading randomisation of Adebayo et al. 2018); the original is untouched."""
    import keras
    import numpy as np

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    weighted = [layer for layer in copy.layers if layer.weights]
    rng = np.random.default_rng(seed)
    for layer in weighted[len(weighted) - max(1, round(share * len(weighted))) :]:
        for v in layer.trainable_weights:  # not BatchNorm's statistics: a variance stays > 0
            w = np.asarray(v.numpy())
            v.assign(rng.normal(0, float(np.std(w)) + 1e-3, w.shape).astype(w.dtype))
    return copy


def sanity_check(
    explainer: Explainer, images: np.ndarray, targets: np.ndarray, maps: np.ndarray
) -> dict:
    """Rank correlation of the maps with those of ever more randomised models: a method
    whose maps stay alike when the weights are random does not explain the model."""
    import numpy as np

    stages = []
    for share in (0.25, 0.5, 1.0):
        random = Explainer(
            randomized(explainer.model, share), explainer.method, explainer.steps, explainer.smooth
        )
        other = random.maps(images, targets)
        rho = [_rank_correlation(a, b) for a, b in zip(maps, other, strict=True)]
        stages.append({"randomized_layers_share": share, "rank_correlation": float(np.mean(rho))})
    passed = stages[-1]["rank_correlation"] < 0.5
    return {"stages": stages, "passed": passed}


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """|Spearman's rho| of two maps; 0 when one is constant (a map that says nothing)."""
    import numpy as np
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return abs(float(spearmanr(a.ravel(), b.ravel()).statistic))


def mass_on(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """For each map, its share of mass on the mask over the mask's share of the area (1: no
    better than uniform)."""
    import numpy as np

    masks = masks.astype(bool)
    on = np.array([m[k].sum() for m, k in zip(maps, masks, strict=True)])
    area = masks.reshape(len(masks), -1).mean(1)
    return on / np.maximum(area, 1e-12)


KIND = "explanations"  # the kind of folder explain's marker records


def explain_files(
    predictor,
    paths,
    method: str,
    out_dir,
    target: str | None = None,
    steps: int = 32,
    smooth: int = 0,
    top_k: int = 3,
):
    """One record per image file, in order: the prediction, a heatmap at the image's own
    resolution (.npy) and an overlay picture (.png) in out_dir. Unreadable files give
    {"path", "error"}."""
    from pathlib import Path

    import numpy as np

    from tfvision_cli.data.images import ImageReadError, read_image
    from tfvision_cli.files import atomic_file, check_new_names, record_files
    from tfvision_cli.plots import explanation

    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    model = differentiable(predictor)
    explainer = Explainer(model, method, steps, smooth)
    names = list(predictor.class_names)
    wanted = _target_index(target, names)
    h, w, c = predictor.input_shape
    out_dir = Path(out_dir)
    stems = [f"{i:05d}-{Path(path).stem[:60]}-{method}" for i, path in enumerate(paths)]
    check_new_names(out_dir, [f"{s}{ext}" for s in stems for ext in (".npy", ".png")], KIND)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        try:
            image = read_image(path, (h, w), c)
            original = read_image(path, None, c)
        except ImageReadError as e:
            yield {"path": str(path), "error": str(e)}
            continue
        probs = np.asarray(model(image[None], training=False))[0]
        label = int(probs.argmax())
        goal = label if wanted is None else wanted
        heat = explainer.maps(image[None], np.array([goal]))[0]
        heat = _resize(heat, original.shape[:2])
        npy = out_dir / f"{stems[i]}.npy"
        with atomic_file(npy, suffix=".npy") as tmp:
            np.save(tmp, heat.astype(np.float32))
        record_files(out_dir, [npy.name], KIND)
        top = np.argsort(-probs)[:top_k]
        title = f"{method} for {names[goal]}: " + ", ".join(
            f"{names[j]} {probs[j]:.2f}" for j in top
        )
        overlay = explanation(original, heat, title, out_dir / f"{stems[i]}.png")
        yield {
            "path": str(path),
            "label": label,
            "class_name": names[label],
            "confidence": float(probs[label]),
            "target": names[goal],
            "method": method,
            "heatmap": str(npy),
            "overlay": str(overlay),
        }


def differentiable(predictor):
    """The Keras model behind a predictor; exports cannot be differentiated."""
    if predictor.keras_model is None:
        raise UsageError(
            f"{predictor.path} is a {predictor.format} export: it cannot be explained",
            hint="explain the run or its .keras file (exports keep no gradients)",
        )
    return predictor.keras_model


def _target_index(target: str | None, names: list[str]) -> int | None:
    from tfvision_cli.errors import did_you_mean

    if target is None:
        return None
    if target in names:
        return names.index(target)
    if target.isdigit() and int(target) < len(names):
        return int(target)
    raise UsageError(f"unknown class {target!r}.{did_you_mean(target, names)}")


def _resize(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map at the image's own resolution (bilinear), still summing to 1."""
    import numpy as np
    from PIL import Image

    if heat.shape == tuple(size):
        return heat
    resized = np.asarray(
        Image.fromarray(heat.astype(np.float32), mode="F").resize(
            (size[1], size[0]), Image.BILINEAR
        ),
        np.float64,
    )
    resized = np.maximum(resized, 0)
    return resized / max(resized.sum(), 1e-12)
