"""Untrusted input: .keras files with code, random bytes as images, random config files."""

import string
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfvision_cli.config import read_yaml, resolve
from tfvision_cli.data.images import ImageReadError, read_image
from tfvision_cli.errors import TfvisionError, UsageError

# tmp_path is shared by the examples of one test: each example overwrites its own file.
TMP_OK = [HealthCheck.function_scoped_fixture]


def test_a_keras_file_with_a_lambda_layer_is_refused(cli, tmp_path):
    import keras

    marker = tmp_path / "code-ran"
    # the Lambda's code touches a file whenever it runs; Keras stores that code in the file
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x * 2)[1]")
    inputs = keras.Input((4,))
    path = tmp_path / "evil.keras"
    keras.Model(inputs, keras.layers.Lambda(touch)(inputs)).save(path)
    marker.unlink()  # building the model above ran it once
    r = cli("evaluate", str(path), "--dataset", "digits")
    assert r.exit_code == 1
    assert "Lambda" in r.stderr and "refused" in r.stderr
    assert not marker.exists()
    # the check can fail: loading the same file without safe_mode does run its code
    keras.models.load_model(path, safe_mode=False)
    assert marker.exists()


def test_a_dataset_folder_cannot_choose_code_to_import(cli, mnist, tmp_path, monkeypatch):
    """TFDS imports the module a features.json names; tfvision reads only TFDS's own classes,
    in a prepared folder and in a TFDS data directory alike."""
    import json
    import shutil
    from pathlib import Path

    marker = tmp_path / "code-ran"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "planted_feature.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    version = next(p for p in (Path(mnist) / "mnist").iterdir() if p.name[0].isdigit())
    folder = tmp_path / "data" / "mnist" / version.name
    folder.mkdir(parents=True)
    for meta in version.glob("*.json"):
        shutil.copy(meta, folder)
    features = json.loads((folder / "features.json").read_text())
    features["featuresDict"]["features"]["label"]["pythonClassName"] = "planted_feature.Label"
    (folder / "features.json").write_text(json.dumps(features))
    r = cli("data", "info", tmp_path / "data")  # a prepared folder
    assert r.exit_code == 1 and "'planted_feature.Label'" in r.stderr, r.stderr
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "data"))
    r = cli("data", "info", "mnist")  # a TFDS data directory
    assert r.exit_code == 1 and "must not choose code to run" in r.stderr, r.stderr
    shutil.copytree(version, folder.parent / "1.0.0", ignore=shutil.ignore_patterns("*record*"))
    r = cli("data", "info", "mnist")  # two versions: TFDS would choose, after the check
    assert r.exit_code == 1 and "must not choose code to run" in r.stderr, r.stderr
    assert not marker.exists()
    # the check can fail: TFDS itself imports the planted module
    import tensorflow_datasets as tfds

    with pytest.raises(ValueError):
        tfds.builder_from_directory(str(folder))
    assert marker.exists()


def test_a_config_file_cannot_run_code(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        read_yaml(evil)
    assert not marker.exists()


UNSAFE_RULES = "S301,S302,S307,S102,S506,S202"  # pickle, marshal, eval, exec, yaml.load, tar


def _ruff(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--select",
            UNSAFE_RULES,
            str(path),
        ],
        capture_output=True,
        text=True,
    )


def test_no_pickle_eval_or_unsafe_loader_anywhere_in_the_package(tmp_path):
    import ast
    from pathlib import Path

    import tfvision_cli

    package = Path(tfvision_cli.__file__).parent
    r = _ruff(package)
    assert r.returncode == 0, r.stdout
    # the same check flags such code (it can fail)
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle, yaml\npickle.loads(b'')\nyaml.load('a: 1')\neval('1')\n")
    r = _ruff(bad)
    assert r.returncode == 1 and all(rule in r.stdout for rule in ("S301", "S506", "S307"))
    # keyword arguments that switch the loaders' own protections off, found in the syntax tree
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant):
                off = (node.arg, node.value.value) in (("allow_pickle", True), ("safe_mode", False))
                assert not off, f"{source}:{node.value.lineno}: {node.arg}={node.value.value}"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2048), ext=st.sampled_from([".png", ".jpg", ".gif", ".bmp"]))
def test_random_bytes_never_crash_the_image_reader(tmp_path, data, ext):
    p = tmp_path / f"fuzz{ext}"
    p.write_bytes(data)
    try:
        a = read_image(p, (8, 8), 1)
    except ImageReadError as e:
        assert str(p) in str(e)
    else:
        assert a.shape == (8, 8, 1) and a.dtype == np.uint8


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1", "CMYK"]),
    channels=st.sampled_from([1, 3]),
    fmt=st.sampled_from(["PNG", "GIF", "BMP", "JPEG"]),
)
def test_valid_but_odd_images_convert(tmp_path, h, w, mode, channels, fmt):
    from PIL import Image

    im = Image.fromarray(np.random.default_rng(h * w).integers(0, 255, (h, w), dtype=np.uint8))
    try:
        im = im.convert(mode)
        p = tmp_path / f"odd.{fmt.lower()}"
        im.save(p, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode: nothing to read
    a = read_image(p, (5, 7), channels)
    assert a.shape == (5, 7, channels) and a.dtype == np.uint8


yaml_text = st.text(alphabet=string.printable, max_size=200)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=yaml_text)
def test_random_config_files_give_only_documented_errors(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    try:
        config = resolve(None, read_yaml(p), None)
    except UsageError as e:  # exit code 2: one line that says something
        assert str(e).strip() and "\n" not in str(e).strip()
    else:  # what loads is a valid configuration
        assert config.problems() == []


@settings(max_examples=60, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(
            [
                "epochs",
                "batch_size",
                "learning_rate",
                "schedule",
                "image_size",
                "label_smoothing",
                "validation_split",
                "model_options",
            ]
        ),
        st.one_of(
            st.integers(-5, 5),
            st.floats(allow_nan=True),
            st.text(max_size=5),
            st.none(),
            st.lists(st.integers()),
            st.booleans(),
        ),
    )
)
def test_random_option_values_are_usage_errors_or_valid(values):
    try:
        config = resolve(None, values, None)
    except UsageError:
        return
    except TfvisionError:
        pytest.fail("only usage errors are expected from configuration")
    assert (config.epochs is None or config.epochs >= 1) and config.batch_size >= 1
    assert 0 < config.learning_rate < float("inf")
    assert 0 <= config.label_smoothing < 1 and 0 <= config.validation_split < 1
