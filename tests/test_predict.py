"""`tfvision predict`: files, folders, stdin; NDJSON in input order; errors per input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import write_image


@pytest.fixture(scope="module")
def mnist_test_images(tmp_path_factory, mnist_run):
    """The first 1,000 MNIST test images as PNGs, and as RGB JPEGs at 3x size."""
    from tests.conftest import MNIST_DIR
    from tfvision_cli.data.catalog import open_dataset

    x, y = open_dataset("mnist", data_dir=MNIST_DIR).arrays("test")
    root = tmp_path_factory.mktemp("mnist-files")
    png, jpg = root / "png", root / "jpg big"
    from PIL import Image

    for i in range(1000):
        write_image(png / f"{i:04d}_{y[i]}.png", x[i, :, :, 0])
        big = Image.fromarray(x[i, :, :, 0]).convert("RGB").resize((84, 84), Image.BICUBIC)
        jpg.mkdir(parents=True, exist_ok=True)
        big.save(jpg / f"{i:04d}_{y[i]}.jpg", quality=90)
    return png, jpg, y[:1000]


def _lines(stdout):
    return [json.loads(line) for line in stdout.strip().splitlines()]


def _accuracy(results, labels):
    return float(np.mean([r["label"] == int(t) for r, t in zip(results, labels, strict=True)]))


def test_folder_predictions_are_ndjson_in_order(cli, mnist_run, mnist_test_images):
    png, _, labels = mnist_test_images
    r = cli("predict", mnist_run, png, "--top-k", "3")
    assert r.exit_code == 0, r.stderr
    results = _lines(r.stdout)
    assert [res["path"] for res in results] == sorted(str(p) for p in png.glob("*.png"))
    first = results[0]
    assert set(first) == {"path", "label", "class_name", "confidence", "top_k"}
    assert len(first["top_k"]) == 3 and first["top_k"][0]["label"] == first["label"]
    assert first["class_name"] == str(first["label"])
    assert _accuracy(results, labels) > 0.9
    assert "images/s" in r.stderr
    assert "batches of 512" in r.stderr  # chosen from the model's 28x28x1 input


def test_the_default_batch_follows_the_input_size():
    """Small images go in big batches (the model's calls, not decoding, cost most on MNIST:
    issue 37), large ones in 64s as before; --batch-size still decides when given."""
    from tfvision_cli.serving.predict import auto_batch_size

    shapes = [(28, 28, 1), (28, 28, 3), (32, 32, 3), (64, 64, 3), (224, 224, 3), (1, 1, 1)]
    assert [auto_batch_size(s) for s in shapes] == [512, 128, 128, 64, 64, 512]


def test_decoding_processes_give_what_threads_give_byte_for_byte(cli, mnist_run, mnist_test_images):
    """A folder is decoded by processes (issue 37: threads barely overlap Pillow's work on small
    images, which holds the GIL), a few files by threads: the same records, in the same order."""
    from concurrent.futures import ProcessPoolExecutor

    from tfvision_cli.serving.predict import decoders, read_run

    png, jpg, _ = mnist_test_images
    files = sorted(str(p) for p in png.glob("*.png"))[:40]
    by_folder = cli("predict", mnist_run, png, "--json")
    by_threads = cli("predict", mnist_run, *files, "--json")
    assert by_folder.exit_code == by_threads.exit_code == 0, by_folder.stderr
    assert by_folder.stdout.splitlines()[:40] == by_threads.stdout.splitlines()
    some = sorted(str(p) for p in jpg.glob("*.jpg"))[:5] + [str(png / "missing.png")]
    with decoders(True) as pool:
        assert isinstance(pool, ProcessPoolExecutor)
        there = pool.submit(read_run, (28, 28, 1), some).result()
    here = read_run((28, 28, 1), some)
    assert [p for p, _, _ in there] == some
    for (_, a, notes_a), (_, b, notes_b) in zip(there[:-1], here[:-1], strict=True):
        assert a.tobytes() == b.tobytes() and notes_a == notes_b
    assert there[-1][1] is None and there[-1][2] == here[-1][2]
    with decoders(False) as none:
        assert none is None


def test_big_rgb_jpegs_classify_like_the_originals(cli, mnist_run, mnist_test_images):
    png, jpg, labels = mnist_test_images
    a = _accuracy(_lines(cli("predict", mnist_run, png).stdout), labels)
    b = _accuracy(_lines(cli("predict", mnist_run, jpg).stdout), labels)
    assert a - b <= 0.01 + 1e-9, (a, b)


def test_stdin_with_a_corrupt_file_reports_it_and_exits_1(mnist_run, mnist_test_images, tmp_path):
    png, _, _ = mnist_test_images
    files = sorted(png.glob("*.png"))[:20]
    bad = tmp_path / "bad dir é" / "corrupt.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    paths = [str(p) for p in files[:10]] + [str(bad)] + [str(p) for p in files[10:]]
    find = subprocess.run(
        ["find", str(png), str(bad.parent), "-name", "*.png"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(find.stdout.splitlines()) == 1001
    r = subprocess.run(
        [sys.executable, "-m", "tfvision_cli", "predict", str(mnist_run), "-", "--batch-size", "7"],
        input="\n".join(paths) + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1
    assert "batches of 7" in r.stderr
    results = _lines(r.stdout)
    assert [res["path"] for res in results] == paths
    assert set(results[10]) == {"path", "error"}
    assert all("label" in res for i, res in enumerate(results) if i != 10)
    assert "\x1b[" not in r.stdout  # no colour codes when piped


def test_find_pipeline_prints_one_line_per_file(mnist_run, mnist_test_images):
    png, _, _ = mnist_test_images
    r = subprocess.run(
        f"find '{png}' -name '*.png' | {sys.executable} -m tfvision_cli predict '{mnist_run}' -",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1000


def test_paths_trickling_in_on_stdin_get_their_results_at_once(mnist_run, mnist_test_images):
    """A slow producer (a watcher, a person typing) sees each result while stdin is still open,
    not when a batch of 512 fills or the input ends; its order and count are kept."""
    import select

    png, _, _ = mnist_test_images
    files = sorted(str(p) for p in png.glob("*.png"))
    p = subprocess.Popen(
        [sys.executable, "-m", "tfvision_cli", "predict", str(mnist_run), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for i, path in enumerate(files[:3]):
            p.stdin.write(f"{path}\n".encode())
            p.stdin.flush()
            ready, _, _ = select.select([p.stdout], [], [], 120 if i == 0 else 30)
            assert ready, f"no result for input {i} while stdin stays open"
            assert json.loads(p.stdout.readline())["path"] == path
        p.stdin.write("".join(f"{path}\n" for path in files[3:]).encode())
        p.stdin.close()
        rest = [json.loads(line)["path"] for line in p.stdout.read().splitlines()]
        assert rest == files[3:]
        assert p.wait(timeout=120) == 0
    finally:
        p.kill()
        p.wait()


def test_missing_file_is_an_error_line_not_a_crash(cli, mnist_run, tmp_path):
    r = cli("predict", mnist_run, str(tmp_path / "nope.png"), "--json")
    assert r.exit_code == 1
    (res,) = _lines(r.stdout)
    assert res["path"].endswith("nope.png") and "error" in res


EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
    b"newpath 0 0 moveto 28 28 lineto stroke showpage\n%%EOF\n"
)


def test_only_allowed_formats_are_decoded_by_content(cli, mnist_run, tmp_path):
    """An allow-list by content: EPS (which Pillow hands to Ghostscript), TIFF, WebP, PPM and
    ICO behind image names are each that file's error record; PNG/JPEG/BMP/GIF under any name
    are read, and the other inputs of the batch are predicted."""
    from PIL import Image

    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    good = [
        write_image(tmp_path / "one.png", digit),
        write_image(tmp_path / "really-a-png.jpg", digit, format="PNG"),
        write_image(tmp_path / "bmp-named.gif", digit, format="BMP"),
    ]
    (tmp_path / "eps.png").write_bytes(EPS)
    bad = [tmp_path / "eps.png"]
    for name, fmt in (
        ("tiff.jpg", "TIFF"),
        ("webp.png", "WEBP"),
        ("ppm.bmp", "PPM"),
        ("ico.gif", "ICO"),
    ):
        Image.fromarray(digit).save(tmp_path / name, format=fmt)
        bad.append(tmp_path / name)
    r = cli("predict", mnist_run, *good[:2], *bad, good[2], "--json")
    assert r.exit_code == 1
    results = {res["path"]: res for res in _lines(r.stdout)}
    assert len(results) == len(good) + len(bad)
    for path in good:
        assert results[str(path)]["class_name"] == "1", results[str(path)]
    for path in bad:
        assert "not a PNG, JPEG, BMP or GIF image" in results[str(path)]["error"], path


def test_an_extreme_image_is_one_error_and_the_batch_goes_on(cli, mnist_run, tmp_path):
    """A 1x50,000,000 PNG is 48 kB and under the pixel limit, but resizing it would take
    gigabytes: refused from its header, like a side over the limit; a failure while converting
    one file (here a MemoryError) is that file's error too."""
    from PIL import Image

    Image.new("L", (50_000_000, 1)).save(tmp_path / "line.png")
    Image.new("L", (40_000, 400)).save(tmp_path / "wide.png")
    Image.new("L", (20_000, 100)).save(tmp_path / "strip.png")
    assert (tmp_path / "line.png").stat().st_size < 200_000
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    files = [write_image(tmp_path / f"{i}.png", digit) for i in range(3)]
    odd = [tmp_path / n for n in ("line.png", "wide.png", "strip.png")]
    inputs = [files[0], odd[0], files[1], odd[1], odd[2], files[2]]
    r = cli("predict", mnist_run, *inputs, "--json")
    assert r.exit_code == 1
    results = _lines(r.stdout)
    assert [("error" in res) for res in results] == [False, True, False, True, True, False]
    assert "a side of 50,000,000 pixels is over 32,768" in results[1]["error"]
    assert "a side of 40,000 pixels" in results[3]["error"]
    assert "more than 100 times wider than high" in results[4]["error"]


def test_a_memory_error_while_converting_is_that_files_error(cli, mnist_run, tmp_path, monkeypatch):
    from PIL import Image

    digit = np.zeros((28, 28), np.uint8)
    files = [write_image(tmp_path / f"{i}.png", digit) for i in range(3)]
    write_image(tmp_path / "big.png", np.zeros((56, 56), np.uint8))
    resize = Image.Image.resize

    def fails_for_big(self, size, *args, **kwargs):
        if self.size == (56, 56):
            raise MemoryError
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", fails_for_big)
    r = cli("predict", mnist_run, files[0], tmp_path / "big.png", *files[1:], "--json")
    assert r.exit_code == 1
    results = _lines(r.stdout)
    assert [("error" in res) for res in results] == [False, True, False, False]
    assert "too large to convert in memory" in results[1]["error"]
