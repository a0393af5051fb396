"""Classes matched by name wherever a model meets labelled data (evaluate, compare, robustness):
a folder's sorted class names are not the model's order, a subset of its classes is evaluated,
a mismatch is refused with both lists, and --class-map maps names deliberately."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_image
from tfvision_cli.data.classes import match_classes
from tfvision_cli.errors import UsageError

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """An MLP trained on the 8x8 digits (classes '0'..'9'), and digits' test images."""
    from typer.testing import CliRunner

    from tfvision_cli.cli import app
    from tfvision_cli.data.catalog import open_dataset

    root = tmp_path_factory.mktemp("digits-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TFVISION_RUNS_DIR", str(root / "runs"))
        args = ["train", "digits", "--model", "mlp", "--epochs", "3", "--run-dir", root / "run"]
        r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    images, labels = open_dataset("digits").arrays("test")
    return root / "run", images, labels


def _folder(root, images, labels, names, keep=None):
    """images written as root/<names[label]>/<i>.png, for the labels in keep (default all)."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        if keep is None or label in keep:
            write_image(root / names[label] / f"{i:04d}.png", image[:, :, 0])
    return root


def test_evaluate_matches_folder_classes_by_name(cli, digits_run, tmp_path):
    run, images, labels = digits_run
    plain = _folder(tmp_path / "plain", images, labels, [str(i) for i in range(10)])
    r = cli("evaluate", run, "--dataset", plain, "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    truth = r.json()
    assert truth["class_match"]["by"] == "names" and truth["num_examples"] == len(labels)
    assert truth["accuracy"] > 0.8

    # The same images in folders named in words sort in another order ('eight' first): by
    # position that is a different class for nearly every folder; by name the same numbers.
    words = _folder(tmp_path / "words", images, labels, WORDS)
    r = cli("evaluate", run, "--dataset", words, "--no-plots")
    assert r.exit_code == 2
    assert "'eight'" in r.stderr and "'0'" in r.stderr and "--class-map" in r.stderr
    class_map = tmp_path / "map.yaml"
    class_map.write_text("".join(f"{w}: '{i}'\n" for i, w in enumerate(WORDS)))
    r = cli("evaluate", run, "-d", words, "--class-map", class_map, "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    mapped = r.json()
    assert mapped["class_match"]["by"] == "class map"
    assert mapped["accuracy"] == truth["accuracy"]
    assert mapped["confusion_matrix"] == truth["confusion_matrix"]


def test_evaluate_a_subset_of_the_models_classes(cli, digits_run, tmp_path):
    run, images, labels = digits_run
    full = _folder(tmp_path / "all", images, labels, [str(i) for i in range(10)])
    cm = np.asarray(
        cli("evaluate", run, "-d", full, "--json", "--no-plots").json()["confusion_matrix"]
    )
    some = _folder(tmp_path / "some", images, labels, [str(i) for i in range(10)], keep={3, 5, 7})
    r = cli("evaluate", run, "-d", some, "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    kept = [3, 5, 7]
    # independent: the same images' rows of the full evaluation's confusion matrix
    assert report["num_examples"] == int(cm[kept].sum())
    assert report["accuracy"] == pytest.approx(cm[kept, kept].sum() / cm[kept].sum())
    recalls = [report["per_class"][k]["recall"] for k in kept]
    assert report["macro_avg"]["recall"] == pytest.approx(np.mean(recalls))
    assert report["class_match"]["classes_present"] == 3
    assert "3 of the model's 10 classes" in report["notes"][0]
    r = cli("evaluate", run, "-d", some, "--no-plots")
    assert "3 of the model's 10 classes" in r.stderr and "matched by names" in r.stdout


def test_compare_and_robustness_match_by_name(cli, digits_run, tmp_path):
    run, images, labels = digits_run
    words = _folder(tmp_path / "words", images, labels, WORDS)
    class_map = tmp_path / "map.yaml"
    class_map.write_text("".join(f"{w}: '{i}'\n" for i, w in enumerate(WORDS)))
    r = cli("compare", run, run, "-d", words, "--json", "--no-plots")
    assert r.exit_code == 2 and "--class-map" in r.stderr
    r = cli("compare", run, run, "-d", words, "--class-map", class_map, "--json", "--no-plots")
    assert r.exit_code == 0, r.stderr
    truth = cli("evaluate", run, "--json", "--no-plots").json()["accuracy"]
    assert r.json()["baseline"]["accuracy"] == truth
    r = cli(
        "robustness",
        run,
        "-d",
        words,
        "--attack",
        "fgsm",
        "--eps",
        "0",
        "--corruptions",
        "",
        "--json",
        "--plots",
        tmp_path,
    )
    assert r.exit_code == 2 and "--class-map" in r.stderr
    r = cli(
        "robustness",
        run,
        "-d",
        words,
        "--class-map",
        class_map,
        "--attack",
        "fgsm",
        "--eps",
        "0",
        "--corruptions",
        "",
        "--json",
        "--plots",
        tmp_path,
    )
    assert r.exit_code == 0, r.stderr
    assert r.json()["clean_accuracy"] == pytest.approx(truth)


def test_match_classes_rules():
    match = match_classes(["b", "a"], ["a", "b", "c"])
    assert match.to_model.tolist() == [1, 0] and match.present == [0, 1] and match.note
    labels, keep = match.labels(np.array([0, 1, 1]))
    assert labels.tolist() == [1, 0, 0] and keep.all()
    # a model that names no class: by position, said
    match = match_classes(["cat", "dog"], ["0", "1"], model_named=False)
    assert match.by == "positions" and "position" in match.note
    with pytest.raises(UsageError):  # a model whose classes are named '0' and '1'
        match_classes(["cat", "dog"], ["0", "1"])
    # MNIST's '0'..'9' against a clothing model's names: refused, both listed
    with pytest.raises(UsageError) as e:
        match_classes([str(i) for i in range(10)], ["0_tshirt", "1_trouser"] + list("abcdefgh"))
    assert "'0_tshirt'" in str(e.value) and "'0'" in str(e.value)
    # a class map drops (null) or renames; a wrong target is refused
    match = match_classes(["x", "y", "z"], ["a", "b"], {"x": "a", "y": None, "z": "b"})
    assert match.to_model.tolist() == [0, -1, 1]
    labels, keep = match.labels(np.array([0, 1, 2]))
    assert labels.tolist() == [0, 1] and keep.tolist() == [True, False, True]
    with pytest.raises(UsageError, match="does not have"):
        match_classes(["x"], ["a"], {"x": "nope"})
    with pytest.raises(UsageError, match="does not have"):
        match_classes(["x"], ["a"], {"typo": "a"})


def test_init_from_copies_the_head_by_class_name(cli, digits_run, tmp_path):
    """Fine-tuning on a folder of 3 of the run's classes keeps their trained head columns: at
    a negligible learning rate the new model already classifies them (a head copied by
    position, or started afresh, would not)."""
    from tfvision_cli.data.catalog import open_dataset

    run = digits_run[0]
    images, labels = open_dataset("digits").arrays("train")
    folder = _folder(tmp_path / "three", images, labels, [str(i) for i in range(10)], {3, 7, 9})
    r = cli(
        "train",
        folder,
        "--init-from",
        run,
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--learning-rate",
        "1e-9",
        "--warmup-epochs",
        "0",
        "--run-dir",
        tmp_path / "ft",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    metrics = r.json()["metrics"]
    assert metrics["notes"]["head_classes_copied"] == ["3", "7", "9"]
    assert metrics["notes"]["layers_started_afresh"] == []
    assert metrics["test_accuracy"] > 0.85
