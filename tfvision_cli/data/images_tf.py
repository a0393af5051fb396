"""images.read_image's conversion as TensorFlow ops, for graphs that take encoded images (the
`image_bytes` signature of SavedModel exports, which TF Serving itself serves).

The same allow-list and limits as the Python reader, checked from the header before decoding:
PNG, JPEG, BMP or GIF by content (TensorFlow would also decode WebP), at most
images.MAX_PIXELS pixels, no side over images.MAX_SIDE. The same conversions: transparency
composited on black, colour to grey with ITU-R 601-2 weights (PIL's "L"), grey repeated to
colour, the first frame of a GIF, Lanczos when shrinking and bilinear when enlarging, rounded to
uint8. Values can differ from Pillow's by a grey level or two after a resize (the resampling
kernels are not bit-identical); labels agree (tests/test_serve.py).
"""

from __future__ import annotations

from tfvision_cli.data.images import ALLOWED_FORMATS, MAX_PIXELS, MAX_SIDE
from tfvision_cli.tf_import import tf as import_tf

# ITU-R 601-2 luma, as PIL's convert("L")
_LUMA = (0.299, 0.587, 0.114)


def decode_images(encoded, size: tuple[int, int], channels: int):
    """(N,) tf.string of encoded images -> (N, H, W, channels) uint8."""
    tf = import_tf()
    h, w = size
    return tf.map_fn(
        lambda data: decode_one(data, (h, w), channels),
        encoded,
        fn_output_signature=tf.TensorSpec((h, w, channels), tf.uint8),
    )


def decode_one(data, size: tuple[int, int], channels: int):
    tf = import_tf()
    known, height, width = _header_size(data)
    allowed = ", ".join(ALLOWED_FORMATS[:-1]) + f" or {ALLOWED_FORMATS[-1]}"
    checks = [
        tf.debugging.Assert(known, [f"not a {allowed} image (its content, whatever its name)"]),
        tf.debugging.Assert(
            height * width <= MAX_PIXELS, [f"the image is over the limit of {MAX_PIXELS:,} pixels"]
        ),
        tf.debugging.Assert(
            tf.maximum(height, width) <= MAX_SIDE, [f"a side is over {MAX_SIDE:,} pixels"]
        ),
    ]
    with tf.control_dependencies(checks):  # refused from the header, before decoding
        image = tf.io.decode_image(data, channels=0, expand_animations=False, dtype=tf.uint8)
    image = tf.cast(image, tf.float32)
    c = tf.shape(image)[-1]
    grey_source = c <= 2
    # alpha: the 2nd channel of grey+alpha, the 4th of RGBA, else opaque
    padded = tf.concat([image, tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255.0)], -1)
    alpha_index = tf.where(c == 2, 1, tf.where(c == 4, 3, c))
    alpha = tf.gather(padded, [alpha_index], axis=-1) / 255.0
    colour = tf.gather(image, tf.where(grey_source, [0, 0, 0], [0, 1, 2]), axis=-1) * alpha
    colour = tf.round(colour)  # Pillow composites in 8 bits
    if channels == 1:
        luma = tf.reduce_sum(colour * tf.constant(_LUMA), axis=-1, keepdims=True)
        pixels = tf.where(grey_source, colour[..., :1], tf.round(luma))
    else:
        pixels = colour
    return _resized(pixels, size)


def _resized(pixels, size: tuple[int, int]):
    tf = import_tf()
    shape = tf.shape(pixels)
    same = tf.logical_and(tf.equal(shape[0], size[0]), tf.equal(shape[1], size[1]))
    shrinking = size[0] * size[1] < shape[0] * shape[1]

    def resize():
        return tf.cond(
            shrinking,
            lambda: tf.image.resize(pixels, size, method="lanczos3", antialias=True),
            lambda: tf.image.resize(pixels, size, method="bilinear"),
        )

    out = tf.cond(same, lambda: pixels, resize)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def _header_size(data):
    """(is one of the allowed formats, height, width) from the header of a PNG, JPEG, BMP or
    GIF, as int64 (a JPEG's from its frame header; 0, 0 for any other content)."""
    tf = import_tf()
    head = tf.strings.substr(data, 0, 26)
    is_png = tf.strings.substr(head, 0, 8) == b"\x89PNG\r\n\x1a\n"
    is_jpeg = tf.strings.substr(head, 0, 3) == b"\xff\xd8\xff"
    is_gif = tf.strings.substr(head, 0, 4) == b"GIF8"
    is_bmp = tf.strings.substr(head, 0, 2) == b"BM"
    known = tf.reduce_any(tf.stack([is_png, is_jpeg, is_gif, is_bmp]))
    padded = head + tf.constant(b"\x00" * 26)  # short data still parses (then fails to decode)

    def number(start: int, length: int, little: bool):
        raw = tf.io.decode_raw(tf.strings.substr(padded, start, length), tf.uint8)
        raw = tf.cast(raw, tf.int64)
        order = range(length) if little else reversed(range(length))
        return sum(raw[i] * (256**k) for k, i in enumerate(order))

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data, output_type=tf.int64)
        return shape[0], shape[1]

    def other():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    branches = [
        (is_png, lambda: (number(20, 4, False), number(16, 4, False))),
        (is_gif, lambda: (number(8, 2, True), number(6, 2, True))),
        (is_bmp, lambda: (_signed32(number(22, 4, True)), number(18, 4, True))),
        (is_jpeg, jpeg),
    ]
    height, width = tf.case(branches, default=other, exclusive=False)
    return known, height, width


def _signed32(n):
    """A BMP's height is signed (negative: stored top-down): its size is the magnitude."""
    tf = import_tf()
    return tf.abs(tf.where(n >= 2**31, n - 2**32, n))
