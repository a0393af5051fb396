"""Augmentation and regularisation (issue 21): RandAugment, MixUp, CutMix, random erasing,
L1/L2 kernels, dropout and drop-path, and a picture of what the model sees."""

from __future__ import annotations

import numpy as np
import pytest
import yaml


def _digits_like(n: int = 16, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Bright strokes on black, labelled 0..9 (like MNIST, so no flips apply)."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, size, size, 1), np.uint8)
    for i in range(n):
        images[i, 6:22, 8 + i % 8 : 12 + i % 8] = 200 + rng.integers(0, 55)
    return images, np.arange(n) % 10


@pytest.mark.parametrize(
    "level, erasing", [("light", 0), ("standard", 0), ("randaugment", 0), ("none", 1.0)]
)
def test_each_augmentation_changes_images_and_keeps_shapes_and_dtypes(level, erasing):
    from tfvision_cli.data.pipeline import augment_sample, augmenter

    images, labels = _digits_like()
    augment = augmenter(level, allow_flip=False, seed=0, magnitude=0.3, erasing=erasing)
    after, soft = augment_sample(images, labels, 10, augment, None)
    assert after.shape == images.shape and after.dtype == np.uint8
    assert np.mean(np.any(after != images, axis=(1, 2, 3))) >= 0.5  # most images changed
    assert np.array_equal(soft.argmax(1), labels) and np.all(soft.max(1) == 1)  # labels kept


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0), (0, 1.0), (0.4, 1.0)])
def test_mixup_and_cutmix_labels_are_soft_and_sum_to_one(mixup, cutmix):
    from tfvision_cli.data.pipeline import augment_sample, mixer

    images, labels = _digits_like(32)
    after, soft = augment_sample(images, labels, 10, None, mixer(mixup, cutmix, seed=0))
    assert after.shape == images.shape and after.dtype == np.uint8
    assert np.allclose(soft.sum(1), 1.0, atol=1e-5) and np.all(soft >= 0)
    assert np.mean(soft.max(1) < 0.999) > 0.25  # mixed, not one-hot


def test_label_smoothing_on_soft_labels_is_the_textbook_loss():
    import keras

    soft = np.array([[0.7, 0.3, 0.0], [0.0, 0.25, 0.75]], np.float32)
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(soft, probs)
    smoothed = soft * 0.9 + 0.1 / 3
    expected = -np.mean(np.sum(smoothed * np.log(probs), axis=1))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_a_regularised_augmented_run_keeps_its_regularisers_and_loads_safely(cli, tmp_path):
    import keras

    from tfvision_cli.models.io import load_model

    run = tmp_path / "run"
    r = cli(
        "train",
        "digits",
        "--model",
        "cnn",
        "--epochs",
        "1",
        "--augment",
        "randaugment",
        "--mixup",
        "0.2",
        "--cutmix",
        "1.0",
        "--random-erasing",
        "0.25",
        "--l1",
        "1e-5",
        "--l2",
        "1e-4",
        "--run-dir",
        run,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    counted = r.json()["metrics"]["notes"]["regularized_kernels"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["mixup"], config["cutmix"], config["l1"], config["l2"]) == (0.2, 1.0, 1e-5, 1e-4)
    model = load_model(run / "model.keras")  # safe mode
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    kernels = [layer for layer in model.layers if isinstance(layer, kinds)]
    assert len(kernels) == counted == 3  # cnn: two convolutions and the classifier
    for layer in kernels:
        reg = layer.kernel_regularizer
        assert reg.l1 == pytest.approx(1e-5) and reg.l2 == pytest.approx(1e-4)
    assert len(model.losses) == 3  # the penalties are part of the loss


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_drop_path_is_random_in_training_and_the_identity_at_inference(name, tmp_path):
    import keras

    from tfvision_cli.models.io import load_model, save_model
    from tfvision_cli.models.registry import create_model

    model = create_model(name, (16, 16, 1), 10, drop_path=0.5, dropout=0.0)
    dropped = [layer for layer in model.layers if "drop_path" in layer.name]
    assert dropped and all(
        layer.noise_shape[1:] == (1,) * (len(layer.noise_shape) - 1) for layer in dropped
    )  # one draw per example
    x, _ = _digits_like(8, 16)
    assert np.array_equal(model(x, training=False), model(x, training=False))
    keras.utils.set_random_seed(1)
    assert not np.allclose(model(x, training=True), model(x, training=True))
    save_model(model, tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")  # safe mode: Keras's own Dropout
    assert np.allclose(again(x, training=False), model(x, training=False), atol=1e-6)


@pytest.mark.parametrize("name", ["cnn", "fastnet", "lenet5", "mlp", "resnet", "rnn", "vit"])
def test_every_small_model_takes_a_dropout(name):
    from tfvision_cli.models.registry import check_model

    assert check_model(name, {"dropout": 0.3}) == []


def test_preview_shows_each_image_beside_its_augmented_self(cli, tmp_path):
    out = tmp_path / "grid.png"
    r = cli(
        "data",
        "preview",
        "digits",
        "--count",
        "8",
        "--augment",
        "randaugment",
        "--mixup",
        "0.4",
        "--random-erasing",
        "0.5",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    r = cli("data", "preview", "digits", "--mixup", "-1", "--out", tmp_path / "x.png")
    assert r.exit_code == 2 and not (tmp_path / "x.png").exists()
    # --augment auto (the default) shows what training on that dataset would use
    for args in (("--mixup", "0.4"), ("--augment", "auto"), ("--augment", "shift")):
        r = cli("data", "preview", "digits", "--count", "4", *args, "--out", tmp_path / "a.png")
        assert r.exit_code == 0, (args, r.stderr)


def test_small_data_gets_shifts_and_a_narrower_default_model():
    """Below 5,000 training images a class (images of 16x16 or more): --augment auto gives
    shift and fastnet width 24; MNIST-sized data and the 8x8 digits keep the plain recipe; an
    explicit choice is kept."""
    from tfvision_cli.config import TrainConfig
    from tfvision_cli.training.data import adapt_to_data, chosen_from_data

    auto = TrainConfig(dataset="x")
    assert auto.augment == "auto" and auto.model == "fastnet"
    small = adapt_to_data(auto, 20_000, (28, 28, 1), 10)  # 2,000 a class
    assert small.augment == "shift" and small.model_options == {"width": 24}
    assert chosen_from_data(auto, small, 141).endswith(
        "augment shift, fastnet width 24 (small data)"
    )
    mnist = adapt_to_data(auto, 54_000, (28, 28, 1), 10)
    assert mnist.augment == "none" and mnist.model_options == {}
    digits = adapt_to_data(auto, 1_400, (8, 8, 1), 10)
    assert digits.augment == "none" and digits.model_options == {}
    chosen = TrainConfig(
        dataset="x", augment="light", model_options={"width": 40}, steps_per_execution=4
    )
    assert adapt_to_data(chosen, 300, (64, 64, 3), 3) == chosen
    # batches per call: 8 for small images on one device, else 1
    assert mnist.steps_per_execution == 8
    assert adapt_to_data(auto, 54_000, (28, 28, 1), 10, replicas=2).steps_per_execution == 1
    assert adapt_to_data(auto, 5_000, (224, 224, 3), 10).steps_per_execution == 1
    assert (
        adapt_to_data(TrainConfig(dataset="x", model="cnn"), 300, (64, 64, 3), 3).model_options
        == {}
    )


def test_shift_moves_whole_images_by_whole_pixels():
    from tfvision_cli.data.pipeline import augment_sample, augmenter

    images = np.zeros((32, 28, 28, 1), np.uint8)
    images[:, 10:18, 10:18] = 255
    out, _ = augment_sample(images, np.zeros(32, np.int64), 10, augmenter("shift", False, 0), None)
    offsets = set()
    for image in out:
        ys, xs = np.nonzero(image[..., 0])
        assert image.sum() == images[0].sum()  # the square whole: moved, not blurred or cut
        offsets.add((int(ys.min()) - 10, int(xs.min()) - 10))
    assert len(offsets) > 5 and all(max(abs(dy), abs(dx)) <= 2 for dy, dx in offsets)
