"""Every registered model: builds on 28x28x1 and 32x32x3, predicts probabilities, saves, reloads."""

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
