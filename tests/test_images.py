"""The image reader every command shares: odd modes and broken files."""

import numpy as np
import pytest
from PIL import Image

from tfvision_cli.data.images import ImageReadError, read_image


def _save(tmp_path, name, im, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


@pytest.mark.parametrize(
    "mode,ext",
    [("L", "png"), ("RGB", "jpg"), ("RGBA", "png"), ("P", "gif"), ("RGB", "bmp"), ("CMYK", "jpg")],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_modes_convert_to_the_requested_shape(tmp_path, mode, ext, channels):
    base = Image.fromarray((np.arange(30 * 40) % 256).reshape(30, 40).astype(np.uint8))
    p = _save(tmp_path, f"img.{ext}", base.convert(mode))
    a = read_image(p, (16, 20), channels)
    assert a.shape == (16, 20, channels) and a.dtype == np.uint8


def test_sixteen_bit_png_scales_to_eight_bits(tmp_path):
    a16 = np.full((10, 10), 65535, dtype=np.uint16)
    a16[:5] = 0
    p = _save(tmp_path, "deep.png", Image.fromarray(a16))
    a = read_image(p, None, 1)
    assert a[0, 0, 0] == 0 and a[9, 9, 0] == 255


def test_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255  # white but fully transparent
    p = _save(tmp_path, "clear.png", Image.fromarray(rgba, "RGBA"))
    assert read_image(p, None, 1).max() == 0


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert read_image(p, None, 1).max() == 0


@pytest.mark.parametrize(
    "content,reason", [(b"", "empty file"), (b"hello", "not a readable image")]
)
def test_broken_files_raise_with_the_path(tmp_path, content, reason):
    p = tmp_path / "bad file é.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError) as e:
        read_image(p, None, 1)
    assert str(p) in str(e.value) and reason in str(e.value)


def test_truncated_png_raises(tmp_path):
    p = _save(
        tmp_path,
        "full.png",
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)),
    )
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        read_image(p, None, 1)


def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    from tfvision_cli.data import images

    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    p = _save(tmp_path, "big.png", Image.new("L", (200, 100)))  # 20,000 pixels
    with pytest.raises(ImageReadError) as e:
        read_image(p, (8, 8), 1)
    assert "over the limit" in str(e.value)
    small = _save(tmp_path, "small.png", Image.new("L", (100, 100)))
    assert read_image(small, (8, 8), 1).shape == (8, 8, 1)
