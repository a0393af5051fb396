"""CONTRIBUTING.md's promises: a model is one file, an export format one table row plus its
writer and loader, a training option one field. Each is proven here by adding a throwaway one."""

from __future__ import annotations

import dataclasses

import pytest


@pytest.fixture
def throwaway_model():
    """A model registered the way a new file in tfvision_cli/models/ registers one."""
    from tfvision_cli.models import registry
    from tfvision_cli.models.layers import classifier_head, image_input, preprocess_stem

    @registry.register_model("tiny_test_net", family="mlp", description="a throwaway")
    def tiny_test_net(input_shape, num_classes, units: int = 16):
        import keras

        inputs = image_input(input_shape)
        x = keras.layers.Flatten()(preprocess_stem(inputs))
        x = keras.layers.Dense(units, activation="relu")(x)
        return keras.Model(inputs, classifier_head(x, num_classes), name="tiny_test_net")

    yield "tiny_test_net"
    del registry._MODELS["tiny_test_net"]


def test_a_model_is_one_registered_function(cli, tmp_path, throwaway_model):
    with pytest.raises(ValueError, match="registered twice"):
        from tfvision_cli.models.registry import register_model

        register_model(throwaway_model, family="mlp", description="again")(lambda s, n: None)
    r = cli("models", "list", "tiny*", "--input-shape", "8,8,1", "--json")
    assert r.exit_code == 0 and [m["name"] for m in r.json()] == [throwaway_model]
    args = ("train", "digits", "--model", throwaway_model, "--model-option", "units=32")
    r = cli(*args, "--epochs", "3", "--run-dir", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["metrics"]["test_accuracy"] > 0.5
    r = cli(*args[:4], "--model-option", "unit=32")
    assert r.exit_code == 2 and "'unit'" in r.stderr and "units" in r.stderr


def test_an_export_format_is_a_row_a_writer_and_a_loader(cli, tmp_path, monkeypatch):
    """A `tfl` format (LiteRT under another file name) added the way CONTRIBUTING.md says."""
    from tfvision_cli.artifacts import export, formats, loaders

    def write_tfl(model, folder, quantize, calibration):
        path = export.write_tflite(model, folder, quantize, calibration)
        return path.rename(folder / "model.tfl")

    row = formats.Format("tfl", "model.tfl", ("none",), write_tfl, loaders.load_tflite)
    monkeypatch.setitem(formats.FORMATS, "tfl", row)
    r = cli("train", "digits", "--model", "mlp", "--epochs", "2", "--run-dir", tmp_path / "run")
    assert r.exit_code == 0, r.stderr
    r = cli("export", tmp_path / "run", "--format", "tfl", "--out", tmp_path / "tfl", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["parity"]["agreement"] >= 0.999  # the gate ran it in its runtime
    assert (tmp_path / "tfl" / "model.tfl").is_file()
    r = cli("evaluate", tmp_path / "tfl" / "model.tfl", "--dataset", "digits", "--json")
    assert r.exit_code == 0 and r.json()["accuracy"] > 0.5


def test_every_format_row_resolves_its_writer_and_loader():
    import inspect

    from tfvision_cli.artifacts import formats

    for f in formats.FORMATS.values():
        writer, loader = formats._resolve(f.writer), formats._resolve(f.loader)
        assert list(inspect.signature(writer).parameters)[:2] == ["model", "folder"], f.name
        assert len(inspect.signature(loader).parameters) == 4, f.name
        assert f.quantizations[0] == "none"
    assert formats.quantizations() == ("none", "float16", "dynamic", "int8")
    assert "savedmodel" in formats.variants() and "tflite-int8" in formats.variants()


def test_a_training_option_is_one_field(cli, monkeypatch):
    """A field added to TrainConfig becomes a flag with its help, default and range, is
    checked, and lands in config.yaml (here a throwaway subclass stands in for the edit)."""
    from tfvision_cli import config

    @dataclasses.dataclass
    class Extended(config.TrainConfig):
        gradient_noise: float = config.option(0.0, "A throwaway option.", low=0, high=1)

    monkeypatch.setattr(config, "TrainConfig", Extended)
    from tfvision_cli.cli import options

    monkeypatch.setattr(options, "TrainConfig", Extended)
    params = {p.name: p for p in options.config_options()}
    assert "gradient_noise" in params
    option = params["gradient_noise"].default
    assert option.param_decls == ("--gradient-noise",) and "Range [0, 1]" in option.help
    bad = config.resolve(None, {}, {"gradient_noise": 2.0}, validate=False).problems()
    assert bad == ["gradient noise must be in [0, 1], got 2.0"]
    assert "gradient_noise: 0.5" in config.to_yaml(config.resolve(None, {"gradient_noise": 0.5}))
