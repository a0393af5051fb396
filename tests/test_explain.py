"""`tfvision explain` and `tfvision robustness` (issue 18), on a model trained on real MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_image


@pytest.fixture(scope="module")
def mnist_test(mnist_run) -> tuple[np.ndarray, np.ndarray]:
    """64 MNIST test images and labels."""
    import tensorflow_datasets as tfds

    ds = tfds.load("mnist", split="test[:64]", as_supervised=True, download=False)
    images, labels = zip(*tfds.as_numpy(ds), strict=True)
    return np.stack(images), np.array(labels)


# Measured on the default recipe's model (benchmarks/robustness_mnist.py, 256 images): integrated
# gradients 6.5x, Grad-CAM 1.32x (1.28x when upsampled bilinearly), plain saliency 0.93x (asked 2x:
# not met; the input gradient of the default convnet is nearly uniform over the image, SmoothGrad
# does not change it). This fixture is a smaller model; saliency is tested on the classic convnet.
def digit_ratio(model_file: Path, method: str, images, labels) -> float:
    """The maps' mean share of mass on the digit's strokes over the strokes' share of the area."""
    from tfvision_cli.analysis.explain import Explainer, mass_on
    from tfvision_cli.models.io import load_model

    maps = Explainer(load_model(model_file), method, steps=16).maps(images, labels)
    assert maps.shape == images.shape[:3] and np.allclose(maps.sum((1, 2)), 1)
    return float(mass_on(maps, images[..., 0] >= 64).mean())


@pytest.mark.parametrize("method, at_least", [("integrated-gradients", 2.0), ("gradcam", 1.15)])
def test_maps_point_at_the_digit(mnist_run, mnist_test, method, at_least):
    ratio = digit_ratio(mnist_run / "model.keras", method, *mnist_test)
    assert ratio >= at_least, f"{method}: {ratio:.2f}x the digit's share of the area"


def test_every_map_points_at_the_digit_on_the_classic_convnet(cli, mnist, mnist_test, tmp_path):
    """Issue 18's three figures on one model, the Keras example's convnet: saliency and
    integrated gradients >= 2x their share of mass on the strokes, Grad-CAM >= 1.3x (measured
    on these 64 images after these 800 steps: 2.45x, 6.5x, 1.50x; on 256 images after the
    default schedule: 2.53x, 6.5x, 1.60x). Plain saliency is not 2x on the default fastnet
    (0.93x, see the note above)."""
    run = tmp_path / "cnn"
    r = cli(
        "train",
        "mnist",
        "--model",
        "cnn",
        "--label-smoothing",
        "0",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "400",
        "--run-dir",
        run,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    from tfvision_cli.analysis.explain import default_method
    from tfvision_cli.models.io import load_model

    assert default_method(load_model(run / "model.keras"))[0] == "saliency"  # stride 1
    for method, at_least in (("saliency", 2.0), ("integrated-gradients", 2.0), ("gradcam", 1.3)):
        ratio = digit_ratio(run / "model.keras", method, *mnist_test)
        assert ratio >= at_least, f"{method}: {ratio:.2f}x the digit's share of the area"


@pytest.mark.parametrize(
    "name, layer, grid",
    [
        ("cnn", "conv2d", (11, 11)),  # the last convolution, not the 5x5 max pooling after it
        ("lenet5", "c3", (10, 10)),  # not s4, its average pooling
        ("fastnet", "b2_relu", (3, 3)),  # an unpadded stem: 12x12, 10x10, 5x5, 3x3
        ("vit", "patch_embed", (7, 7)),  # weighed on the patch tokens of the last block
        ("mobilenet_v2", "block_13_expand_relu", (2, 2)),  # inside the nested backbone; at 32x32
        # its last map is 1x1 and the 3x3 before it is zero padding
    ],
)
def test_gradcam_weighs_the_last_convolutional_maps(name, layer, grid):
    """Grad-CAM finds its layer itself (Selvaraju et al.'s last convolutional maps), also inside
    a keras.applications backbone (that case died with "not connected to inputs"), and gives
    one finite map per image at the image's resolution, summing to 1."""
    import keras

    from tfvision_cli.analysis.explain import Explainer, _feature_layer
    from tfvision_cli.models.registry import create_model

    keras.utils.set_random_seed(0)
    model = create_model(name, (28, 28, 1), 10)
    found, nest = _feature_layer(model)
    assert found.name.startswith(layer) and tuple(found.output.shape[1:3]) == grid
    assert (nest is not None) == (name == "mobilenet_v2")
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.uint8)
    maps = Explainer(model, "gradcam").maps(images, np.array([0, 1, 2]))
    assert maps.shape == (3, 28, 28) and np.isfinite(maps).all()
    assert np.allclose(maps.sum((1, 2)), 1)


def test_the_sanity_check_fires_for_maps_that_ignore_the_weights(mnist_run, mnist_test):
    """Saliency changes when the weights are randomised; integrated gradients from a black
    baseline on MNIST hardly do (x - black, the image itself, dominates: Adebayo et al.'s
    finding for gradient x input), and the check says so."""
    from tfvision_cli.analysis.explain import Explainer, sanity_check
    from tfvision_cli.models.io import load_model

    images, labels = mnist_test[0][:8], mnist_test[1][:8]
    model = load_model(mnist_run / "model.keras")
    for method, passes in (("saliency", True), ("integrated-gradients", False)):
        explainer = Explainer(model, method, steps=8)
        result = sanity_check(explainer, images, labels, explainer.maps(images, labels))
        assert result["passed"] is passes, (method, result)
        assert [s["randomized_layers_share"] for s in result["stages"]] == [0.25, 0.5, 1.0]


def test_explain_writes_a_heatmap_and_an_overlay_per_image(cli, mnist_run, mnist_test, tmp_path):
    images, labels = mnist_test
    folder = tmp_path / "in"
    for i in range(3):  # at 56x56: the heatmap comes back at the image's own resolution
        big = np.kron(images[i][..., 0], np.ones((2, 2), np.uint8))
        write_image(folder / f"{i}-{labels[i]}.png", big)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = cli("explain", mnist_run, folder, "--method", "gradcam", "--out", out, "--json")
    assert r.exit_code == 1 and "1 of 4 inputs could not be read" in r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    good = [rec for rec in records if "error" not in rec]
    assert len(records) == 4 and len(good) == 3
    for rec in good:
        assert int(rec["class_name"]) == int(Path(rec["path"]).stem.split("-")[1])
        heat = np.load(rec["heatmap"])
        assert heat.shape == (56, 56) and heat.sum() == pytest.approx(1, abs=1e-4)
        assert Path(rec["overlay"]).read_bytes()[:4] == b"\x89PNG"
    r = cli("explain", mnist_run, folder / "0-7.png", "--target", "seven")
    assert r.exit_code == 2 and "unknown class 'seven'" in r.stderr
    # the default on the default model (a strided stem): Grad-CAM, which points at the digit
    first = next(folder.glob("0-*.png"))
    r = cli("explain", mnist_run, first, "--out", tmp_path / "auto", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "gradcam"
    assert "method: gradcam (a stem of stride 2 spreads plain input gradients" in r.stderr


def test_an_export_cannot_be_explained_nor_an_mlp_by_gradcam(cli, tmp_path):
    run = tmp_path / "run"
    assert (
        cli("train", "digits", "--model", "mlp", "--epochs", "1", "--run-dir", run).exit_code == 0
    )
    tflite = tmp_path / "m.tflite"
    assert cli("export", run, "--format", "tflite", "--out", tflite).exit_code == 0
    write_image(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    r = cli("explain", tflite, tmp_path / "x.png")
    assert r.exit_code == 2 and "cannot be explained" in r.stderr
    # an MLP has no feature map after its input: Grad-CAM says so (it was "Graph disconnected")
    r = cli("explain", run, tmp_path / "x.png", "--method", "gradcam")
    assert r.exit_code == 2 and "this model has none: use --method saliency" in r.stderr
    r = cli("explain", run, tmp_path / "x.png", "--out", tmp_path / "maps", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["method"] == "saliency"  # the default


def test_robustness_is_consistent_at_eps_zero_and_never_rises_with_eps(cli, mnist_run, tmp_path):
    r = cli(
        "robustness",
        mnist_run,
        "--attack",
        "fgsm",
        "--eps",
        "0",
        "--corruptions",
        "",
        "--plots",
        tmp_path,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    report = r.json()
    test_accuracy = json.loads((mnist_run / "metrics.json").read_text())["test_accuracy"]
    assert report["n"] == 10_000
    assert report["attacks"][0]["accuracy"] == pytest.approx(report["clean_accuracy"], abs=1e-9)
    assert report["clean_accuracy"] == pytest.approx(test_accuracy, abs=1e-4)
    r = cli(
        "robustness",
        mnist_run,
        "--eps",
        "0,0.1,0.3",
        "--steps",
        "5",
        "--corruptions",
        "gaussian_noise,rotation",
        "--limit",
        "200",
        "--plots",
        tmp_path,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    report = r.json()
    for kind in ("fgsm", "pgd"):
        curve = [a["accuracy"] for a in report["attacks"] if a["attack"] == kind]
        assert curve[0] == report["clean_accuracy"]
        assert all(b <= a for a, b in zip(curve, curve[1:], strict=False)), (kind, curve)
    pgd = {a["eps"]: a["accuracy"] for a in report["attacks"] if a["attack"] == "pgd"}
    fgsm = {a["eps"]: a["accuracy"] for a in report["attacks"] if a["attack"] == "fgsm"}
    assert pgd[0.3] <= fgsm[0.3] and fgsm[0.3] < 0.5  # a clean-trained model is fooled
    assert report["warnings"] == []  # and shows no sign of gradient masking
    noise = {row["eps"]: row["accuracy"] for row in report["random_noise"]}
    assert noise[0.1] > fgsm[0.1] and noise[0.3] > fgsm[0.3]
    assert len(report["corruptions"]) == 10
    assert (tmp_path / "robustness.png").stat().st_size > 0
    r = cli("robustness", mnist_run, "--attack", "fgsn")
    assert r.exit_code == 2 and "Did you mean: fgsm" in r.stderr
    for eps in ("0,nan", "inf", "0,-0.1"):
        r = cli("robustness", mnist_run, "--eps", eps)
        assert r.exit_code == 2 and "--eps values must be in [0, 1]" in r.stderr, (eps, r.stderr)


@pytest.mark.parametrize(
    "name", ["gaussian_noise", "gaussian_blur", "contrast", "rotation", "jpeg"]
)
def test_each_corruption_grows_with_its_severity(mnist_test, name):
    from tfvision_cli.analysis.robustness import corrupt

    images = mnist_test[0][:16]
    change = []
    for severity in range(1, 6):
        out = corrupt(images, name, severity)
        assert out.shape == images.shape and out.dtype == np.uint8
        change.append(np.abs(out.astype(float) - images).mean())
    assert change[0] > 0 and change[-1] > change[0]


def test_adversarial_training_runs_and_keeps_a_plain_model(cli, tmp_path):
    from tfvision_cli.models.io import load_model

    plain, hardened = tmp_path / "plain", tmp_path / "hardened"
    args = ("train", "digits", "--model", "cnn", "--epochs", "2", "--json")
    assert cli(*args, "--run-dir", plain).exit_code == 0
    r = cli(*args, "--adversarial", "fgsm:0.1", "--run-dir", hardened)
    assert r.exit_code == 0, r.stderr
    model = load_model(hardened / "model.keras")  # the model alone, no training wrapper
    assert model.name == "cnn" and r.json()["metrics"]["params"] == model.count_params()
    digest = json.loads((plain / "metrics.json").read_text())["weights_sha256"]
    assert r.json()["metrics"]["weights_sha256"] != digest  # same seed: the attacks changed it
    config = (hardened / "config.yaml").read_text()
    assert "adversarial: fgsm:0.1" in config
    for bad in ("fgsm", "pgd:2", "cw:0.1"):
        r = cli("train", "digits", "--adversarial", bad)
        assert r.exit_code == 2 and "--adversarial takes fgsm:EPS or pgd:EPS" in r.stderr


def test_attacks_stay_in_their_budget_and_training_starts_anew_each_step():
    """Attacks stay within eps of the image and in 0..255; adversarial training's FGSM (a random
    start, a step of 1.25 eps) too; a new seed (the training step) draws a new random start."""
    import tensorflow as tf

    from tfvision_cli.training.adversarial import perturb

    rng = np.random.default_rng(0)
    x0 = tf.constant(rng.integers(0, 256, (8, 6, 6, 1)).astype(np.float32))
    y = tf.constant(rng.integers(0, 3, 8).astype(np.int32))
    w = tf.constant(rng.normal(size=(36, 3)).astype(np.float32))
    forward = lambda v: tf.nn.softmax(tf.reshape(v / 255.0, (-1, 36)) @ w)  # noqa: E731
    eps = 0.1
    train = [
        perturb(forward, x0, y, "fgsm", eps, seed=s, random_start=True, step=1.25 * 255 * eps)
        for s in (1, 2)
    ]
    for adv in (perturb(forward, x0, y, "fgsm", eps), perturb(forward, x0, y, "pgd", eps), *train):
        assert 0 < float(tf.reduce_max(tf.abs(adv - x0))) <= 255 * eps + 1e-3
        assert float(tf.reduce_min(adv)) >= 0 and float(tf.reduce_max(adv)) <= 255
    assert not np.array_equal(train[0].numpy(), train[1].numpy())


def test_a_faint_map_still_sums_to_one_and_an_empty_one_is_uniform(monkeypatch):
    """A random MobileNet's Grad-CAM map summing to 1.7e-13 came out summing to 0.17 (it was
    divided by at least 1e-12); a map of zeros says nothing and becomes uniform."""
    from tfvision_cli.analysis import explain
    from tfvision_cli.models.registry import create_model

    faint = np.zeros((2, 12, 12))
    faint[0, 3:6, 3:6] = 1e-14
    monkeypatch.setattr(explain, "gradcam", lambda *args: faint)
    images = np.zeros((2, 12, 12, 1), np.uint8)
    model = create_model("cnn", (12, 12, 1), 4)
    maps = explain.Explainer(model, "gradcam").maps(images, np.arange(2))
    assert np.allclose(maps.sum((1, 2)), 1)
    assert np.allclose(maps[0, 3:6, 3:6], 1 / 9) and np.allclose(maps[1], 1 / 144)


def test_maps_explain_the_score_before_the_softmax():
    """The explained scores are the logits: log-probabilities up to one constant per image."""
    import keras

    from tfvision_cli.analysis.explain import find_stem, score_head
    from tfvision_cli.models.registry import create_model

    model = create_model("cnn", (12, 12, 1), 4)
    images = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 1)).astype(np.uint8)
    cut, scores = score_head(model)
    assert cut is model.layers[-1].input
    logits = np.asarray(scores(keras.Model(find_stem(model).output, cut)(find_stem(model)(images))))
    log_probs = np.log(model.predict(images, verbose=0))
    shift = logits - log_probs
    assert np.allclose(shift, shift[:, :1], atol=1e-4)
    assert not np.allclose(logits, log_probs, atol=1e-3)  # not the log-probabilities themselves


def test_masking_signs_on_the_numbers_of_an_fgsm_trained_model():
    """The issue's figures (FGSM-trained at eps 0.3): accuracy rising with eps, FGSM far above
    PGD; a plain model's falling curves raise nothing."""
    from tfvision_cli.analysis.robustness import masking_signs

    def report(rows, noise=()):
        attacks = [{"attack": k, "eps": e, "accuracy": a} for k, e, a in rows]
        noise = [{"eps": e, "accuracy": a} for e, a in noise]
        return {"n": 2000, "attacks": attacks, "random_noise": noise}

    masked = report(
        [
            ("fgsm", 0.0, 0.988),
            ("fgsm", 0.1, 0.499),
            ("fgsm", 0.3, 0.975),
            ("pgd", 0.0, 0.988),
            ("pgd", 0.1, 0.193),
            ("pgd", 0.3, 0.0),
        ]
    )
    signs = masking_signs(masked)
    assert any("rises from 0.499 at eps 0.1 to 0.975 at eps 0.3" in s for s in signs)
    assert any("FGSM leaves accuracy 0.975 but PGD 0.000" in s for s in signs)
    assert all("PGD with more steps" in s for s in signs)
    plain = report(
        [
            ("fgsm", 0.0, 0.99),
            ("fgsm", 0.1, 0.6),
            ("fgsm", 0.3, 0.05),
            ("pgd", 0.0, 0.99),
            ("pgd", 0.1, 0.3),
            ("pgd", 0.3, 0.0),
        ],
        noise=[(0.1, 0.98), (0.3, 0.9)],
    )
    assert masking_signs(plain) == []
    weaker_than_noise = report([("fgsm", 0.0, 0.9), ("fgsm", 0.3, 0.85)], noise=[(0.3, 0.5)])
    assert "above random noise" in masking_signs(weaker_than_noise)[0]


def test_robustness_flags_a_model_whose_gradients_vanish(cli, tmp_path):
    """A model that binarises its input (a steep sigmoid: zero gradient almost everywhere) is
    'robust' only to the gradients: the attacks do no better than random signs of the same
    budget, and robustness says so in --json, on stderr and in the picture."""
    import keras

    from tfvision_cli.data.catalog import open_dataset
    from tfvision_cli.models.io import save_model

    x, y = open_dataset("digits").arrays("train")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), dtype="uint8")
    h = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    h = keras.layers.Flatten()(keras.ops.sigmoid((h - 0.5) * 1e5))
    h = keras.layers.Dense(64, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    path = save_model(model, tmp_path / "binarised.keras")
    args = ["robustness", path, "-d", "digits", "--eps", "0,0.1,0.3", "--corruptions", ""]
    r = cli(*args, "--plots", tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["warnings"] and "gradient masking" in report["warnings"][0]
    noise = {row["eps"]: row["accuracy"] for row in report["random_noise"]}
    fgsm = {a["eps"]: a["accuracy"] for a in report["attacks"] if a["attack"] == "fgsm"}
    assert fgsm[0.3] > noise[0.3]  # the sign the warnings report
    r = cli(*args, "--plots", tmp_path)
    assert "gradient masking" in r.stderr and "random noise" in r.stdout


def test_explain_replaces_none_of_a_users_files(cli, mnist_run, tmp_path):
    """Every output name is checked before the first is written: a user's .npy or PNG that
    shares a name keeps its bytes and nothing else is written; tfvision's own outputs are
    replaced on a second run."""
    from tests.conftest import write_image

    images = [write_image(tmp_path / f"img{i}.png", np.zeros((28, 28), np.uint8)) for i in range(2)]
    out = tmp_path / "out"
    out.mkdir()
    for planted in ("00000-img0-saliency.npy", "00001-img1-saliency.png"):
        (out / planted).write_bytes(b"a user's bytes")
        r = cli("explain", mnist_run, *images, "--method", "saliency", "--out", out)
        assert r.exit_code == 2 and planted in r.stderr, r.stderr
        assert [p.name for p in out.iterdir()] == [planted]
        assert (out / planted).read_bytes() == b"a user's bytes"
        (out / planted).unlink()
    for _ in range(2):  # the second run replaces what the first wrote
        r = cli("explain", mnist_run, *images, "--method", "saliency", "--out", out, "--json")
        assert r.exit_code == 0, r.stderr
    assert len(list(out.glob("*.npy"))) == 2 and len(list(out.glob("*.png"))) == 2
