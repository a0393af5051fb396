"""Shared fixtures: the real CLI in-process, real MNIST from TFDS_DATA_DIR, generated images."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mnist_dir() -> str | None:
    """TFDS_DATA_DIR when it holds MNIST (CI sets it to the shared copy)."""
    for candidate in (os.environ.get("TFDS_DATA_DIR"), ROOT.parent / "shared/tensorflow_datasets"):
        if candidate and (Path(candidate) / "mnist").is_dir():
            return str(candidate)
    return None


MNIST_DIR = _mnist_dir()


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own runs folder; decoded-array caches are shared by the session."""
    monkeypatch.setenv("TFVISION_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("TFVISION_CACHE_DIR", str(_session_cache(tmp_path_factory)))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    if MNIST_DIR:
        monkeypatch.setenv("TFDS_DATA_DIR", MNIST_DIR)


_cache: list[Path] = []


def _session_cache(factory) -> Path:
    if not _cache:
        _cache.append(factory.mktemp("cache"))
    return _cache[0]


@pytest.fixture
def mnist() -> str:
    """The TFDS data directory holding MNIST. Missing MNIST fails in CI and skips elsewhere."""
    if MNIST_DIR is None:
        if os.environ.get("CI"):
            pytest.fail("MNIST is needed: set TFDS_DATA_DIR to a TFDS directory holding mnist")
        pytest.skip("MNIST not found: set TFDS_DATA_DIR")
    return MNIST_DIR


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli():
    """Runs `tfvision ARGS...` through the real Typer app and its error handling."""
    from typer.testing import CliRunner

    from tfvision_cli.cli import app

    def run(*args: str, input: str | None = None) -> Result:
        r = CliRunner().invoke(app, [str(a) for a in args], input=input, prog_name="tfvision")
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Result(r.exit_code, r.stdout, r.stderr)

    return run


def write_image(path: Path, array: np.ndarray, mode: str | None = None, **save) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    im.save(path, **save)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Three classes of simple shapes in mixed sizes and modes, plus three bad files."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for c, name in enumerate(["circle", "square", "stripes"]):
        for i in range(12):
            size = (20 + 4 * (i % 4), 24 + 2 * (i % 3))
            yy, xx = np.mgrid[: size[0], : size[1]]
            if c == 0:
                img = ((yy - size[0] / 2) ** 2 + (xx - size[1] / 2) ** 2 < 40) * 220
            elif c == 1:
                img = ((abs(yy - size[0] / 2) < 5) & (abs(xx - size[1] / 2) < 5)) * 220
            else:
                img = (yy % 6 < 3) * 220
            img = np.clip(img + rng.integers(0, 30, size), 0, 255).astype(np.uint8)
            mode = ["L", "RGB", "RGBA", "P"][i % 4]
            ext = [".png", ".jpg", ".bmp", ".gif"][i % 4] if mode in ("L", "RGB") else ".png"
            if mode == "P":
                ext = ".gif"
            write_image(root / name / f"{name}_{i}{ext}", img, mode)
    (root / "circle" / "empty.png").write_bytes(b"")
    good = (root / "square" / "square_0.png").read_bytes()
    (root / "square" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "stripes" / "notes.jpg").write_text("this is not an image")
    return root


def shared_dir(tmp_path_factory) -> Path:
    """A folder shared by all pytest-xdist workers of this session (per session otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def exclusive(path: Path):
    """An inter-process lock, so that xdist workers build shared things once."""
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory) -> Path:
    """A small model trained on real MNIST (about 98.5% test accuracy), built once a session."""
    from typer.testing import CliRunner

    from tfvision_cli.cli import app

    if MNIST_DIR is None:
        if os.environ.get("CI"):
            pytest.fail("MNIST is needed: set TFDS_DATA_DIR to a TFDS directory holding mnist")
        pytest.skip("MNIST not found: set TFDS_DATA_DIR")
    shared = shared_dir(tmp_path_factory)
    run = shared / "mnist-run"
    with exclusive(shared / "mnist-run.lock"):
        if not (run / "metrics.json").is_file():
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("TFVISION_CACHE_DIR", str(_session_cache(tmp_path_factory)))
                r = CliRunner().invoke(
                    app,
                    [
                        "train",
                        "mnist",
                        "--data-dir",
                        MNIST_DIR,
                        "--epochs",
                        "2",
                        "--steps-per-epoch",
                        "200",
                        "--run-dir",
                        str(run),
                        "--json",
                    ],
                )
            assert r.exit_code == 0, r.output
    return run
