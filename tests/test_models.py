"""Every registered model: builds on 28x28x1 and 32x32x3, predicts probabilities, saves, reloads."""

import subprocess
import sys

import numpy as np
import pytest

from tfvision_cli.errors import UsageError
from tfvision_cli.models.registry import create_model, list_models

SHAPES = [(28, 28, 1), (32, 32, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list_models())
def test_forward_save_reload(name, shape, tmp_path):
    from tfvision_cli.models.io import load_model, save_model

    model = create_model(name, shape, 10)
    assert model.inputs[0].dtype == "uint8"
    x = np.random.default_rng(0).integers(0, 256, (3, *shape), dtype=np.uint8)
    p = model.predict(x, verbose=0)
    assert p.shape == (3, 10)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)
    path = save_model(model, tmp_path / "m.keras")
    reloaded = load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), p, atol=1e-5)


def test_registry_lists_the_lineage():
    assert {
        "mlp",
        "cnn",
        "lenet5",
        "resnet",
        "mobilenet_v2",
        "efficientnet_b0",
        "vit",
        "rnn",
        "fastnet",
        "fastnet_s",
        "fastnet_xs",
    } <= set(list_models())
    assert list_models("res*") == ["resnet"]


def test_unknown_model_lists_close_matches():
    with pytest.raises(UsageError) as e:
        create_model("lenet", (28, 28, 1), 10)
    assert "lenet5" in str(e.value)


def test_unknown_model_option_is_a_usage_error():
    with pytest.raises(UsageError) as e:
        create_model("rnn", (28, 28, 1), 10, cel="gru")
    assert "cell" in str(e.value)


def test_registering_twice_is_an_error():
    from tfvision_cli.models.registry import register_model

    with pytest.raises(ValueError):
        register_model("mlp", family="mlp", description="again")(lambda s, n: None)


def test_mlp_is_the_classic_network():
    model = create_model("mlp", (28, 28, 1), 10)
    assert model.count_params() == 784 * 128 + 128 + 128 * 10 + 10


def test_cnn_is_the_keras_example():
    # Keras "Simple MNIST convnet": 34,826 parameters
    assert create_model("cnn", (28, 28, 1), 10).count_params() == 34826


def test_models_list_json_and_show(cli):
    rows = cli("models", "list", "--json").json()
    by_name = {r["name"]: r for r in rows}
    assert by_name["cnn"]["params"] == 34826
    r = cli("models", "show", "cnn", "--json")
    d = r.json()
    # conv1 26*26*32*9*2 + conv2 11*11*64*32*9*2 + dense 1600*10*2 (multiply-adds count 2)
    expected = 26 * 26 * 32 * 9 * 2 + 11 * 11 * 64 * 32 * 9 * 2 + 1600 * 10 * 2
    assert abs(d["flops_per_image"] - expected) / expected < 0.05
    assert cli("models", "show", "vit", "--input-shape", "32,32,3").exit_code == 0


def test_build_writes_a_loadable_untrained_model(cli, tmp_path):
    from tfvision_cli.models.io import load_model

    out = tmp_path / "lenet.keras"
    r = cli("build", "lenet5", "--input-shape", "32,32,3", "--classes", "7", "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["params"] > 0
    model = load_model(out)
    assert tuple(model.inputs[0].shape[1:]) == (32, 32, 3) and model.outputs[0].shape[-1] == 7


def test_build_rejects_bad_shapes(cli, tmp_path):
    r = cli("build", "cnn", "--input-shape", "28,28", "--out", tmp_path / "m.keras")
    assert r.exit_code == 2 and "--input-shape" in r.stderr
    r = cli("build", "cnn", "--input-shape", "28,28,2", "--out", tmp_path / "m.keras")
    assert r.exit_code == 2


def test_pretrained_without_network_is_a_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    r = cli(
        "build",
        "mobilenet_v2",
        "--input-shape",
        "96,96,3",
        "--pretrained",
        "--out",
        tmp_path / "m.keras",
    )
    assert r.exit_code == 1
    assert "ImageNet weights" in r.stderr and "Traceback" not in r.stderr


def test_mlp_depth_stacks_hidden_layers():
    """Hinton et al.'s distillation student is 784-800-800-10: `depth` stacks the hidden layer."""
    import keras

    def dense_units(model):
        return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]

    assert dense_units(create_model("mlp", (28, 28, 1), 10)) == [128, 10]
    assert dense_units(create_model("mlp", (28, 28, 1), 10, hidden=800, depth=2)) == [800, 800, 10]
    with pytest.raises(UsageError):
        create_model("mlp", (28, 28, 1), 10, depth=0)


@pytest.mark.parametrize("center_scale", [True, False])
def test_fused_batch_norm_trains_like_keras_batch_norm(center_scale):
    """One training step of the fused layer and of keras.layers.BatchNormalization from the
    same weights: same outputs, same gradients, same moving statistics (biased variance, as
    Keras's); inference and anything the kernel cannot do is Keras's own call."""
    import keras
    import tensorflow as tf

    from tfvision_cli.models.custom_layers import FusedBatchNormalization

    kw = dict(momentum=0.8, center=center_scale, scale=center_scale)
    fused, plain = FusedBatchNormalization(**kw), keras.layers.BatchNormalization(**kw)
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (6, 5, 4, 3)), tf.float32)
    fused.build(x.shape), plain.build(x.shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(1.0, 0.5, w.shape).astype("float32") for w in plain.get_weights()]
    fused.set_weights(weights), plain.set_weights(weights)
    upstream = tf.constant(rng.normal(size=x.shape), tf.float32)

    def step(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        return y, tape.gradient(loss, [x, *layer.trainable_weights])

    (y1, g1), (y2, g2) = step(fused), step(plain)
    np.testing.assert_allclose(y1, y2, atol=1e-5)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for a, b in zip(fused.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not np.allclose(fused.moving_variance.numpy(), weights[-1])  # the update happened
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), atol=1e-6)
    rows = x[..., 0]  # 3-D: not the kernel's case, Keras's own call
    three_d, keras_3d = FusedBatchNormalization(), keras.layers.BatchNormalization()
    np.testing.assert_allclose(three_d(rows, training=True), keras_3d(rows, training=True))


def test_fastnet_trains_with_the_fused_layer_and_saves_keras_own(tmp_path):
    import keras

    from tfvision_cli.models.custom_layers import FusedBatchNormalization
    from tfvision_cli.models.io import load_model, load_weights, save_model
    from tfvision_cli.training.finetune import model_from_file

    model = create_model("fastnet_s", (28, 28, 1), 10)
    assert model.get_layer("stem_bn").__class__ is FusedBatchNormalization
    assert model.get_layer("b1_conv").output.shape[1:3] == (10, 10)  # unpadded stem: 12x12
    path = save_model(model, tmp_path / "m.keras")
    assert model.get_layer("stem_bn").__class__ is FusedBatchNormalization  # swapped back
    again = load_model(path)  # safe mode on
    assert again.get_layer("b2_bn").__class__ is keras.layers.BatchNormalization
    # trained further by tfvision: the fused kernel again
    assert model_from_file(path, (28, 28, 1), 10).get_layer("b2_bn").__class__ is (
        FusedBatchNormalization
    )
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    model(x, training=True)  # moving statistics move
    save_model(model, path)
    fresh = create_model("fastnet_s", (28, 28, 1), 10)
    load_weights(fresh, path)  # a resumed run's best weights
    np.testing.assert_array_equal(fresh(x), model(x))
    with pytest.raises(UsageError):
        create_model("fastnet", (28, 28, 1), 10, stem_padding="full")


def test_fastnet_widths_in_multiples_of_16_for_the_fast_preset():
    """fastnet_xs (--preset fast's): 16 and 32 channels, then 128 in the last block; fastnet's
    last block stays 4 x width unless last_width is given."""
    channels = {
        name: [create_model(name, (28, 28, 1), 10).get_layer(f"{b}_conv").filters for b in BLOCKS]
        for name in ("fastnet", "fastnet_s", "fastnet_xs")
    }
    assert channels == {
        "fastnet": [32, 64, 128],
        "fastnet_s": [24, 48, 96],
        "fastnet_xs": [16, 32, 128],
    }
    wide_end = create_model("fastnet", (28, 28, 1), 10, width=16, last_width=64)
    assert [wide_end.get_layer(f"{b}_conv").filters for b in BLOCKS] == [16, 32, 64]


BLOCKS = ("stem", "b1", "b2")


def test_every_model_file_loads_in_plain_keras(tmp_path):
    """A `.keras` file tfvision writes names Keras's own layers only: a fresh process that
    never imports tfvision loads it in safe mode and computes what the model computed."""
    from tfvision_cli.models.io import save_model

    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    names = [n for n in list_models() if n not in ("mobilenet_v2", "efficientnet_b0")]
    for name in names:
        options = {"drop_path": 0.2} if name in ("resnet", "vit") else {}
        model = create_model(name, (32, 32, 3), 10, **options)
        save_model(model, tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", np.asarray(model(x, training=False)))
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np, keras\n"
        "d = sys.argv[1]\n"
        "x = np.load(d + '/x.npy')\n"
        "for n in sys.argv[2:]:\n"
        "    m = keras.models.load_model(f'{d}/{n}.keras', safe_mode=True, compile=False)\n"
        "    got = np.asarray(m(x, training=False))\n"
        "    assert np.abs(got - np.load(f'{d}/{n}.npy')).max() < 1e-5, n\n"
        "assert not any(k.startswith('tfvision') for k in sys.modules)\n"
        "print('ok', len(sys.argv) - 2)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), *names],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-2:] == ["ok", str(len(names))]
