"""`tfvision data ...` and `tfvision preprocess` on real MNIST, digits and generated folders."""

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def test_info_mnist_json(cli, mnist):
    r = cli("data", "info", "mnist", "--json")
    assert r.exit_code == 0, r.stderr
    d = r.json()
    assert d["name"] == "mnist"
    assert d["splits"] == {"train": 60000, "test": 10000}
    assert d["num_classes"] == 10 and d["image_shape"] == [28, 28, 1]
    assert d["class_names"] == [str(i) for i in range(10)]
    assert sum(d["class_counts"].values()) == 70000
    assert d["class_counts"]["1"] == 7877  # the published count of ones in MNIST
    assert 33.0 < d["pixel_stats"]["mean"][0] < 33.7  # MNIST's well-known mean, 0.1307*255


def test_info_digits_needs_no_data_dir(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "nothing-here"))
    d = cli("data", "info", "digits", "--json").json()
    assert d["num_classes"] == 10 and d["image_shape"] == [8, 8, 1]
    assert sum(d["splits"].values()) == 1797
    # 0..16 pixel values are scaled to 0..255
    assert d["pixel_stats"]["mean"][0] > 50


def test_a_prepared_dataset_is_read_from_its_folder(mnist, tmp_path):
    """One version prepared: its folder is read without TFDS's registry of ~500 builder modules
    (0.2 s of every start). Two versions: TFDS chooses its own default, as before."""
    import shutil

    from tensorflow_datasets.core.read_only_builder import ReadOnlyBuilder

    from tfvision_cli.data.tfds_source import get_builder

    builder = get_builder("mnist", mnist)
    assert isinstance(builder, ReadOnlyBuilder) and builder.is_prepared()
    assert builder.info.splits["train"].num_examples == 60000
    version = Path(str(builder.data_dir))
    for name in (version.name, "1.0.0"):
        (tmp_path / "mnist" / name).mkdir(parents=True)
        for meta in version.glob("*.json"):
            shutil.copy(meta, tmp_path / "mnist" / name)
    registered = get_builder("mnist", str(tmp_path))
    assert not isinstance(registered, ReadOnlyBuilder)
    assert str(registered.info.version) == version.name


def test_info_table_on_terminal_names_splits(cli):
    r = cli("data", "info", "digits")
    assert r.exit_code == 0
    assert "Examples per class" in r.stdout and "train" in r.stdout


def test_unknown_dataset_suggests_close_match(cli, mnist):
    r = cli("data", "info", "mnistt")
    assert r.exit_code == 2
    assert "unknown dataset 'mnistt'" in r.stderr and "mnist" in r.stderr
    assert "Traceback" not in r.stderr


def test_list_knows_the_common_datasets(cli):
    rows = cli("data", "list", "--json").json()
    names = {r["name"] for r in rows}
    assert {"digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100"} <= names
    digits = next(r for r in rows if r["name"] == "digits")
    assert sum(digits["splits"].values()) == 1797


def test_download_offline_fails_fast_and_says_how_to_work_offline(cli, monkeypatch, tmp_path):
    from tfvision_cli.data import tfds_source

    monkeypatch.setattr(tfds_source, "_network_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    r = cli("data", "download", "cifar10", "--data-dir", str(tmp_path))
    assert r.exit_code == 1
    assert time.perf_counter() - start < 5
    assert "no network" in r.stderr and "TFDS_DATA_DIR" in r.stderr and "`digits`" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())


# MNIST's published class counts (LeCun et al.; shared/datasets/mnist/README.md)
PUBLISHED = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


def test_the_main_job_trains_offline_from_the_packaged_mnist(cli, monkeypatch, tmp_path):
    """No network and no TFDS copy: `tfvision train mnist` reads the IDX files shipped in the
    package, says so, and evaluates on MNIST's 10,000 test images."""
    from tfvision_cli.data import tfds_source

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(tfds_source, "_network_reachable", lambda *a, **k: False)
    info = cli("data", "info", "mnist", "--json")
    assert info.exit_code == 0, info.stderr
    counts = info.json()["class_counts_per_split"]
    assert counts == PUBLISHED and info.json()["source"] == "packaged"
    r = cli(
        "train",
        "mnist",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "20",
        "--run-dir",
        tmp_path / "run",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    assert "IDX files packaged with tfvision" in r.stderr
    metrics = r.json()["metrics"]
    assert metrics["test_accuracy"] > 0.5  # 20 steps of an MLP already learn the digits
    r = cli("evaluate", tmp_path / "run", "--json", "--no-plots")
    assert r.exit_code == 0 and r.json()["num_examples"] == 10_000, r.stderr
    assert not any((tmp_path / "empty").glob("mnist*"))  # nothing downloaded or prepared


def test_packaged_mnist_is_tfds_mnist(mnist):
    """The packaged IDX files hold the same images as TFDS's prepared MNIST: the same multiset
    of (image, label) pairs in each split, whatever order each source keeps."""
    import hashlib

    from tfvision_cli.data.builtin import packaged_mnist
    from tfvision_cli.data.catalog import open_dataset

    packaged, tfds = packaged_mnist(), open_dataset("mnist", data_dir=mnist)
    assert tfds.info.source == "tfds"
    for split in ("train", "test"):
        digests = []
        for images, labels in (packaged.arrays(split), tfds.arrays(split)):
            digests.append(
                sorted(
                    hashlib.sha256(x.tobytes() + bytes([y])).digest()
                    for x, y in zip(images, labels, strict=True)
                )
            )
        assert digests[0] == digests[1]


def test_network_probe_really_fails_without_network():
    from tfvision_cli.data.tfds_source import _network_reachable

    # a port nothing listens on at loopback: refused at once
    assert _network_reachable("127.0.0.1", 9, timeout=1) is False


def test_download_of_a_prepared_dataset_needs_no_network(cli, mnist, monkeypatch):
    from tfvision_cli.data import tfds_source

    monkeypatch.setattr(tfds_source, "_network_reachable", lambda *a, **k: False)
    r = cli("data", "download", "mnist", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["splits"]["train"] == 60000


def test_preview_writes_a_labelled_grid(cli, mnist, tmp_path):
    out = tmp_path / "grid.png"
    r = cli("data", "preview", "mnist", "--out", out, "--count", "16")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 300
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 20  # not a blank picture


def test_preview_unknown_split(cli, mnist, tmp_path):
    r = cli("data", "preview", "mnist", "--split", "validation", "--out", tmp_path / "g.png")
    assert r.exit_code == 2 and "no split 'validation'" in r.stderr


def test_preprocess_skips_bad_files_and_info_reads_the_result(cli, image_folder, tmp_path):
    out = tmp_path / "prepared"
    r = cli("preprocess", image_folder, "--out", out, "--image-size", "24", "--channels", "1")
    assert r.exit_code == 0, r.stderr
    for bad in ("empty.png", "truncated.png", "notes.jpg"):
        assert bad in r.stderr
    info = cli("data", "info", str(out), "--json").json()
    assert info["source"] == "prepared"
    assert info["class_names"] == ["circle", "square", "stripes"]
    assert info["image_shape"] == [24, 24, 1]
    assert info["class_counts"] == {"circle": 12, "square": 12, "stripes": 12}
    assert sum(info["splits"].values()) == 36
    assert set(info["splits"]) == {"train", "validation", "test"}
    # stratified: every class in every split
    for split, counts in info["class_counts_per_split"].items():
        assert all(c >= 1 for c in counts), split


def test_preprocess_is_reproducible_and_seeded(cli, image_folder, tmp_path):
    splits = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = tmp_path / name
        assert cli("preprocess", image_folder, "--out", out, "--seed", seed).exit_code == 0
        splits.append(json.loads((out / "splits.json").read_text()))
    assert splits[0] == splits[1]
    assert splits[0] != splits[2]


def test_preprocess_refuses_to_overwrite(cli, image_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for extra in ((), ("--overwrite",)):  # a folder tfvision did not write: never replaced
        r = cli("preprocess", image_folder, "--out", out, *extra)
        assert r.exit_code == 2 and "not written by tfvision" in r.stderr
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("layout", ["empty", "one-class"])
def test_preprocess_rejects_unusable_folders(cli, tmp_path, layout):
    src = tmp_path / "src"
    src.mkdir()
    if layout == "one-class":
        Image.new("L", (8, 8)).save(src.joinpath("only").mkdir() or src / "only" / "a.png")
    r = cli("preprocess", src, "--out", tmp_path / "out")
    assert r.exit_code == 2
    assert ("single class" if layout == "one-class" else "no class folders") in r.stderr
    assert not (tmp_path / "out").exists()


def test_info_reads_a_raw_class_folder(cli, image_folder):
    d = cli("data", "info", str(image_folder), "--json").json()
    assert d["source"] == "folder" and d["class_names"] == ["circle", "square", "stripes"]
    assert sum(d["splits"].values()) == 36  # 39 files, 3 unreadable


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_preprocess_reads_an_archive_like_its_folder(cli, image_folder, tmp_path, kind):
    import shutil

    base = shutil.make_archive(
        str(tmp_path / "shapes"),
        "zip" if kind == "zip" else "gztar",
        image_folder.parent,
        image_folder.name,
    )
    a = cli("preprocess", image_folder, "--out", tmp_path / "from_folder", "--json")
    b = cli("preprocess", base, "--out", tmp_path / "from_archive", "--json")
    assert a.exit_code == 0 and b.exit_code == 0, b.stderr
    da, db = a.json(), b.json()
    assert db["name"] == "shapes" and db["class_names"] == da["class_names"]
    assert db["splits"] == da["splits"] and db["class_counts"] == da["class_counts"]
    # the same files in the same splits, named inside the archive; bad files reported by path
    for x, y in ((tmp_path / "from_folder", tmp_path / "from_archive"),):
        assert json.loads((x / "splits.json").read_text()) == json.loads(
            (y / "splits.json").read_text()
        )
    assert any(f.startswith(f"shapes.{kind}:circle/empty.png") for f in db["failures"])
    assert not list(Path(tempfile.gettempdir()).glob("tfvision-extract-*/shapes"))


def _evil_archives(tmp_path):
    import io
    import tarfile
    import zipfile

    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, "PNG")
    evil = {}
    evil["dotdot.zip"] = tmp_path / "dotdot.zip"
    with zipfile.ZipFile(evil["dotdot.zip"], "w") as z:
        z.writestr("a/x.png", png.getvalue())
        z.writestr("../escaped.png", png.getvalue())
    for name, member in (
        ("absolute.tar", str(tmp_path / "escaped.png")),
        ("dotdot.tar", "../escaped.png"),
    ):
        evil[name] = tmp_path / name
        with tarfile.open(evil[name], "w") as t:
            info = tarfile.TarInfo(member)
            info.size = len(png.getvalue())
            t.addfile(info, io.BytesIO(png.getvalue()))
    evil["link.tar"] = tmp_path / "link.tar"
    with tarfile.open(evil["link.tar"], "w") as t:
        info = tarfile.TarInfo("a/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    return evil


def test_archives_never_write_outside_their_folder(cli, tmp_path):
    for name, path in _evil_archives(tmp_path).items():
        r = cli("preprocess", path, "--out", tmp_path / "out")
        assert r.exit_code == 1, (name, r.stderr)
        assert "refusing member" in r.stderr and "Traceback" not in r.stderr, name
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "out").exists()
        assert not list(tmp_path.parent.glob("escaped.png"))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    r = cli("preprocess", broken, "--out", tmp_path / "out")
    assert r.exit_code == 1 and "not a readable archive" in r.stderr
