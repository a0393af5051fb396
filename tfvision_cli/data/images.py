"""Reading arbitrary image files into uint8 arrays, the same way everywhere.

`preprocess`, training on raw folders and `predict` all call `read_image`, so a model sees
a file exactly as training saw the images it learnt from.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from tfvision_cli.errors import TfvisionError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
# The formats decoded, recognised by content (never by the file's name): an allow-list. Pillow
# knows dozens more, some of which run other programs (EPS runs Ghostscript) or have a long
# record of decoder bugs; a file in any of them is that file's error.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF")
# Refused from the header, before decoding: more pixels than this (decompression bombs), a side
# longer than MAX_SIDE, or a side more than MAX_ASPECT times the other (a 1x50,000,000 PNG is
# 48 kB and under the pixel limit, but resizing it takes gigabytes).
MAX_PIXELS = 50_000_000
MAX_SIDE = 32_768
MAX_ASPECT = 100


class ImageReadError(TfvisionError):
    """One file that could not be read as an image."""


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def open_image(path: str | os.PathLike):
    """PIL's Image.open (lazy: reads the header only) under tfvision's pixel limit."""
    from PIL import Image

    # PIL's limit is a process-wide setting: tfvision's only while it opens a file (set for
    # good, a test's lowered limit once broke matplotlib's reading of a plot in the same process)
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PIXELS
    try:
        with warnings.catch_warnings():  # PIL warns between 1x and 2x its limit; callers refuse
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path, formats=ALLOWED_FORMATS)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_image(path: str | os.PathLike, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Decode any PNG/JPEG/BMP/GIF to (H, W, channels) uint8, resized to size=(H, W) if given.

    Grayscale, RGB, RGBA (composited on black), palette, 16-bit and CMYK images are all
    converted; an animated GIF gives its first frame. Raises ImageReadError with the reason.
    """
    with _opened(path) as im:
        return _to_array(im, size, channels)


def read_image_noted(
    path: str | os.PathLike, size: tuple[int, int] | None, channels: int
) -> tuple[np.ndarray, list[str]]:
    """read_image, and a note for each conversion that changes what the model sees: a resize
    by more than 2x either way, colour to grey, grey to colour, transparency flattened."""
    with _opened(path) as im:
        notes = conversion_notes(im, size, channels)
        return _to_array(im, size, channels), notes


def read_image_bytes(
    data: bytes, size: tuple[int, int] | None, channels: int, label: str = "image"
) -> tuple[np.ndarray, list[str]]:
    """read_image_noted for an image held in memory (an upload, a base64 string): the same
    formats, limits, conversions and notes; errors name it by label."""
    with _opened(data, label=label) as im:
        notes = conversion_notes(im, size, channels)
        return _to_array(im, size, channels), notes


# A resize by more than this factor, either way, is noted: a model trained on images of another
# size seldom predicts them well.
RESIZE_NOTE_FACTOR = 2.0
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}


def conversion_notes(im, size: tuple[int, int] | None, channels: int) -> list[str]:
    """What converting the opened image im to (size, channels) changes, in words."""
    notes = []
    if size is not None:
        h, w = size
        factor = max(im.height / h, h / im.height, im.width / w, w / im.width)
        if factor > RESIZE_NOTE_FACTOR:
            notes.append(f"resized from {im.height}x{im.width} to {h}x{w} ({factor:.1f}x)")
    grey = im.mode in _GREY_MODES
    if channels == 1 and not grey and _has_colour(im):
        notes.append("colour converted to grey")
    elif channels == 3 and grey:
        notes.append("grey converted to colour (the grey value repeated)")
    if _has_transparency(im):
        notes.append("transparency flattened onto black")
    return notes


def _has_colour(im) -> bool:
    """True when any pixel's red, green and blue differ (a palette or RGB image of greys has
    no colour to lose)."""
    rgb = np.asarray(im.convert("RGB"))
    return bool(np.any(rgb[..., 0] != rgb[..., 1]) or np.any(rgb[..., 1] != rgb[..., 2]))


def _has_transparency(im) -> bool:
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
        return bool(np.any(alpha < 255))
    return False


def read_header(path: str | os.PathLike) -> tuple[int, int, str]:
    """(height, width, PIL mode) from the file's header, without decoding the pixels; raises
    ImageReadError as read_image does for files that are no image or too large."""
    with _opened(path, load=False) as im:
        return im.height, im.width, im.mode


@contextlib.contextmanager
def _opened(source: str | os.PathLike | bytes, load: bool = True, label: str = "image"):
    """The image (a file, or bytes named by label) opened, and decoded with load, under
    tfvision's limits; every failure becomes an ImageReadError naming it and the reason."""
    from PIL import Image, UnidentifiedImageError

    in_memory = isinstance(source, bytes | bytearray)
    try:
        if in_memory and not source:
            raise _Refused("empty data")
        if not in_memory:
            _check_file(source)
        # a str, not a Path: PIL opens it 10% faster, which `predict` on small files notices
        with open_image(io.BytesIO(source) if in_memory else os.fspath(source)) as im:
            _check_size(im.width, im.height)
            if load:
                im.seek(0)
                im.load()
            yield im
        return
    except ImageReadError:
        raise
    except _Refused as e:
        reason = str(e)
    except Image.DecompressionBombError:
        reason = f"over the limit of {MAX_PIXELS:,} pixels"
    except UnidentifiedImageError:
        reason = f"not a {', '.join(ALLOWED_FORMATS[:-1])} or {ALLOWED_FORMATS[-1]} image (its "
        reason += "content, whatever its name)"
    except MemoryError:
        reason = "too large to convert in memory"
    except Exception as e:  # any decoder's or converter's failure is this one file's error
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ImageReadError(f"{label if in_memory else Path(source)}: {reason}") from None


class _Refused(Exception):
    """A reason to refuse an image, before the reader names the image."""


def _check_file(path: str | os.PathLike) -> None:
    """Refuse an empty file, and what is no file at all before opening it: opening a named
    pipe waits for a writer for ever, and a device can be read for ever."""
    st = os.stat(path)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):  # a folder: open says so
        raise _Refused("not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise _Refused("empty file")


def _check_size(width: int, height: int) -> None:
    """Refuse, from the header alone, sizes that decoding or resizing cannot afford."""
    if width * height > MAX_PIXELS:
        raise _Refused(f"{width}x{height} pixels is over the limit of {MAX_PIXELS:,}")
    if max(width, height) > MAX_SIDE:
        raise _Refused(f"a side of {max(width, height):,} pixels is over {MAX_SIDE:,}")
    if max(width, height) > MAX_ASPECT * max(1, min(width, height)):
        raise _Refused(
            f"{width}x{height} is more than {MAX_ASPECT} times wider than high (or higher "
            "than wide): not a picture a classifier can use"
        )


def _to_array(im, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the full range down to 8 bits.
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        # Transparent pixels become black: the background of digit-style data.
        background = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, im.convert("RGBA"))
    target_mode = "L" if channels == 1 else "RGB"
    if im.mode != target_mode:
        im = im.convert(target_mode)
    if size is not None and (im.height, im.width) != tuple(size):
        # Lanczos when shrinking (antialiased: a 3x photo of a digit comes back closest to
        # the original), bilinear when enlarging (no ringing around strokes).
        shrinking = size[0] * size[1] < im.width * im.height
        resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BILINEAR
        im = im.resize((size[1], size[0]), resample)
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return a


def list_class_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """[(class_name, sorted image paths)] for root/<class_name>/**/<image>, classes sorted."""
    classes = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f
            for f in d.rglob("*")
            if f.is_file() and is_image_path(f) and not f.name.startswith(".")
        )
        classes.append((class_name(d.name), files))
    return classes


def class_name(folder_name: str) -> str:
    """A class folder's name as a class name: its bytes as UTF-8, any that are not shown as
    backslash escapes (`caf\\xe9`), so every file that records class names (a run's classes.json,
    a prepared dataset's labels) can hold it, and a raw folder and its prepared copy agree."""
    return os.fsencode(folder_name).decode("utf-8", "backslashreplace")
