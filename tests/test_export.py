"""`tfvision export` and `tfvision benchmark`: every format, the parity gate, fresh processes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import exclusive, shared_dir


@pytest.fixture(scope="module")
def exports(mnist_run, tmp_path_factory):
    """All four formats plus int8 LiteRT exported once a session from the MNIST run (into its
    exports/, where `benchmark` finds them), through the CLI. The xdist workers share the run:
    the first exports under a lock, the others read what it printed (a second export into the
    same folder is refused, rightly)."""
    from typer.testing import CliRunner

    from tfvision_cli.cli import app

    printed = shared_dir(tmp_path_factory) / "mnist-run-exports.json"
    with exclusive(shared_dir(tmp_path_factory) / "mnist-run-exports.lock"):
        if printed.is_file():
            return json.loads(printed.read_text())
        out = {}
        for fmt, quantize in (
            ("savedmodel", "none"),
            ("keras", "none"),
            ("tflite", "none"),
            ("onnx", "none"),
            ("tflite", "int8"),
        ):
            r = CliRunner().invoke(
                app, ["export", str(mnist_run), "--format", fmt, "--quantize", quantize, "--json"]
            )
            assert r.exit_code == 0, r.output
            out[fmt if quantize == "none" else f"{fmt}-{quantize}"] = json.loads(r.stdout)
        printed.write_text(json.dumps(out))
        return out


@pytest.mark.parametrize("variant", ["savedmodel", "keras", "tflite", "onnx", "tflite-int8"])
def test_every_format_passes_the_gate_with_metadata(exports, mnist_run, variant):
    meta = exports[variant]
    parity = meta["parity"]
    assert parity["verified"] and parity["examples"] == 1000
    assert parity["agreement"] >= (0.99 if variant.endswith("int8") else 0.999)
    assert abs(parity["keras_accuracy"] - parity["export_accuracy"]) <= 0.003
    folder = Path(meta["path"]) if variant == "savedmodel" else Path(meta["path"]).parent
    on_disk = json.loads((folder / "metadata.json").read_text())
    assert on_disk["class_names"] == [str(i) for i in range(10)]
    assert on_disk["input"] == {
        "shape": [None, 28, 28, 1],
        "dtype": "uint8",
        "layout": "NHWC",
        "range": "0-255",
    }
    assert on_disk["source"]["run_dir"] == str(mnist_run) and on_disk["dataset"] == "mnist"
    assert any("rescale" in step for step in on_disk["preprocessing_inside"])
    assert folder.parent == mnist_run / "exports"


def test_int8_is_small_and_accurate(exports):
    float_size = exports["tflite"]["size_bytes"]
    int8 = exports["tflite-int8"]
    assert int8["size_bytes"] <= 0.30 * float_size
    assert int8["parity"]["keras_accuracy"] - int8["parity"]["export_accuracy"] <= 0.003


def test_savedmodel_has_the_uint8_serving_signature(exports):
    cli = Path(sys.executable).with_name("saved_model_cli")
    r = subprocess.run(
        [str(cli), "show", "--dir", exports["savedmodel"]["path"], "--all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "signature_def['serving_default']" in text
    serving = text[text.index("signature_def['serving_default']") :]
    assert "dtype: DT_UINT8" in serving and "shape: (-1, 28, 28, 1)" in serving


def test_runtimes_load_the_files_in_a_fresh_process(exports):
    code = (
        "import sys, numpy as np\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "import onnxruntime as ort\n"
        "x = np.zeros((1, 28, 28, 1), np.uint8)\n"
        "it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()\n"
        "it.set_tensor(it.get_input_details()[0]['index'], x); it.invoke()\n"
        "p = it.get_tensor(it.get_output_details()[0]['index'])\n"
        "s = ort.InferenceSession(sys.argv[2], providers=['CPUExecutionProvider'])\n"
        "q = s.run(None, {s.get_inputs()[0].name: x})[0]\n"
        "assert p.shape == q.shape == (1, 10), (p.shape, q.shape)\n"
        "assert abs(p.sum() - 1) < 1e-3 and abs(q.sum() - 1) < 1e-3\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, exports["tflite"]["path"], exports["onnx"]["path"]],
        check=True,
        timeout=300,
    )


@pytest.mark.parametrize("which", ["export", "run"])
def test_the_keras_files_load_in_plain_keras(which, exports, mnist_run):
    """The run trains with tfvision's fused BatchNorm layer; its model.keras and the exported
    .keras hold Keras's own, so a fresh process with Keras alone (safe mode, no tfvision) loads
    either and predicts what the run's model predicts."""
    import zipfile

    artifact = exports["keras"]["path"] if which == "export" else str(mnist_run / "model.keras")
    with zipfile.ZipFile(artifact) as z:
        config = z.read("config.json").decode()
    assert "tfvision" not in config and '"BatchNormalization"' in config
    x = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    code = (
        "import json, sys, numpy as np, keras\n"
        "m = keras.models.load_model(sys.argv[1], safe_mode=True, compile=False)\n"
        "x = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)\n"
        "print(json.dumps(m.predict(x, verbose=0).tolist()))\n"
        "assert not any(k.startswith('tfvision') for k in sys.modules)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, artifact], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    from tfvision_cli.models.io import load_model

    expected = load_model(mnist_run / "model.keras").predict(x, verbose=0)
    printed = np.array(json.loads(r.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(printed, expected, atol=1e-5)


@pytest.mark.parametrize("variant", ["savedmodel", "tflite", "onnx"])
def test_evaluate_and_predict_accept_exports(cli, exports, mnist_run, variant):
    metrics = json.loads((mnist_run / "metrics.json").read_text())
    r = cli("evaluate", exports[variant]["path"], "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    d = r.json()
    assert d["format"] == variant and d["dataset"] == "mnist"
    assert d["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-3)


def test_predict_with_an_exported_model(cli, exports, tmp_path):
    from tests.conftest import write_image

    img = write_image(tmp_path / "seven.png", np.zeros((28, 28), np.uint8))
    r = cli("predict", exports["onnx"]["path"], str(img), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["class_name"] in [str(i) for i in range(10)]


def test_a_broken_export_is_caught_by_the_gate(cli, mnist_run, tmp_path, monkeypatch):
    """An artifact whose input scaling is wrong (x/127.5 instead of x/255) must not be written."""
    from tfvision_cli.artifacts import export as export_lib

    real = export_lib.write_tflite

    def wrong_scaling(model, folder, quantize="none", calibration=None):
        import keras

        config = model.get_config()
        for layer in config["layers"]:
            if layer["class_name"] == "Rescaling":
                layer["config"]["scale"] = 1 / 127.5
        broken = keras.Model.from_config(config)
        broken.set_weights(model.get_weights())
        return real(broken, folder, quantize, calibration)

    import dataclasses

    from tfvision_cli.artifacts.formats import FORMATS

    broken_row = dataclasses.replace(FORMATS["tflite"], writer=wrong_scaling)
    monkeypatch.setitem(FORMATS, "tflite", broken_row)
    out = tmp_path / "broken"
    r = cli("export", mnist_run, "--format", "tflite", "--out", out)
    assert r.exit_code == 1
    assert "parity gate failed" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".broken*"))


def test_no_verify_says_so_loudly(cli, mnist_run, tmp_path):
    r = cli(
        "export", mnist_run, "--format", "keras", "--no-verify", "--out", tmp_path / "k", "--json"
    )
    assert r.exit_code == 0
    assert "NOT checked" in r.stderr
    assert r.json()["parity"] == {"verified": False}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflit"], "tflite"),
        (["--format", "onnx", "--quantize", "int8"], "tflite only"),
        (["--format", "tflite", "--quantize", "int4"], "unknown quantization"),
    ],
)
def test_bad_export_options_are_usage_errors(cli, mnist_run, args, message):
    r = cli("export", mnist_run, *args)
    assert r.exit_code == 2 and message in r.stderr


def test_benchmark_prints_every_format(cli, exports, mnist_run):
    r = cli(
        "benchmark",
        mnist_run,
        "--runs",
        "10",
        "--warmup",
        "2",
        "--batch",
        "128",
        "--formats",
        "keras,savedmodel,tflite,tflite-int8,onnx",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    rows = r.json()
    assert [row["variant"] for row in rows] == [
        "keras (model.predict)",
        "keras (tf.function)",
        "savedmodel",
        "tflite",
        "tflite-int8",
        "onnx",
    ]
    for row in rows:
        assert row["latency_runs"] == 10 and row["latency_ms_p50"] > 0
        assert row["latency_ms_p95"] >= row["latency_ms_p50"]
        assert row["throughput_images_per_s"] > 0 and row["accuracy"] > 0.9
    r = cli("benchmark", mnist_run, "--runs", "5", "--formats", "tflite")
    assert r.exit_code == 0 and "p50 ms" in r.stdout
