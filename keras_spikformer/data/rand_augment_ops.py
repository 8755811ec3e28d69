"""timm's RandAugment ops on one `uint8 [height, width, channels]` image, PIL's arithmetic.

Each op takes the image, `level` (timm's magnitude / 10, a float32 scalar in
[0, 1]) and `sign` (+1 or -1, timm's `_randomly_negate`) and returns a uint8
image of the same shape. The pixel ops use PIL's integer formulas (look-up
tables, `convert("L")`, `Image.blend`'s truncation, the SMOOTH filter), so
they give PIL's pixels. The geometric ops (rotate, shear, translate) sample
bilinearly at PIL's pixel-centre coordinates with PIL's fill rule (timm's
`img_mean` where the source point is off the image) and its truncation,
which gives PIL's bilinear pixels up to float rounding;
timm's bicubic (its choice when the recipe names one) has no TensorFlow
kernel, so bilinear stands in.

References:
    timm `auto_augment.py` (`rand-m9-mstd0.5-inc1`); Pillow `ImageOps`,
    `ImageEnhance`, `Image.rotate`/`Image.transform(AFFINE)`.
"""

import math

import tensorflow as tf


def _lut(image, table):
    """Applies a per-channel look-up table `int32 [channels, 256]` (or `[256]`)."""
    channels = image.shape[-1]
    table = tf.broadcast_to(tf.cast(table, tf.int32), [channels, 256])
    table = tf.cast(tf.clip_by_value(table, 0, 255), tf.uint8)
    index = tf.cast(image, tf.int32) + 256 * tf.range(channels)
    return tf.gather(tf.reshape(table, [-1]), index)


def _grey(image):
    """PIL's `convert("L")`: `(19595 R + 38470 G + 7471 B + 2**15) >> 16`."""
    if image.shape[-1] != 3:
        return tf.cast(image, tf.int32)
    weights = tf.constant([19595, 38470, 7471], tf.int32)
    grey = tf.reduce_sum(tf.cast(image, tf.int32) * weights, -1, keepdims=True)
    return tf.bitwise.right_shift(grey + 32768, 16)


def _blend(degenerate, image, factor):
    """PIL's `Image.blend(degenerate, image, factor)`: float, clipped, truncated."""
    degenerate = tf.cast(degenerate, tf.float32)
    out = degenerate + factor * (tf.cast(image, tf.float32) - degenerate)
    return tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)


def _enhance_factor(level, sign):
    """timm's `_enhance_increasing_level_to_arg`: `max(0.1, 1 +- 0.9 level)`."""
    return tf.maximum(0.1, 1.0 + sign * 0.9 * level)


def auto_contrast(image, level, sign):
    """`ImageOps.autocontrast`: each channel stretched to 0..255 (`int()` of the scale)."""
    del level, sign
    flat = tf.cast(tf.reshape(image, [-1, image.shape[-1]]), tf.float64)
    lo, hi = tf.reduce_min(flat, 0), tf.reduce_max(flat, 0)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    ramp = tf.range(256, dtype=tf.float64)[None]
    table = tf.floor(ramp * scale[:, None] - (lo * scale)[:, None])
    table = tf.where((hi > lo)[:, None], table, ramp)
    return _lut(image, tf.cast(table, tf.int32))


def _equalize(images):
    """PIL's `ImageOps.equalize` per image and channel (0..255 floats).

    `keras.layers.Equalization` would do, but under the JAX backend it traces
    to a graph ~30x larger inside `tf.data`; this is the same maths in a few
    vectorised ops.
    """
    shape = tf.shape(images)
    batch, channels = shape[0], shape[3]
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.int32)
    pixels = tf.transpose(tf.reshape(pixels, [batch, -1, channels]), [0, 2, 1])
    offsets = 256 * tf.range(batch * channels)
    flat = tf.reshape(pixels, [batch * channels, -1]) + offsets[:, None]
    # A segment sum rather than `bincount`, which XLA cannot compile.
    flat = tf.reshape(flat, [-1])
    hist = tf.math.unsorted_segment_sum(
        tf.ones_like(flat), flat, 256 * batch * channels
    )
    hist = tf.reshape(hist, [batch * channels, 256])
    last = 255 - tf.argmax(
        tf.reverse(tf.cast(hist > 0, tf.int32), [1]), axis=1, output_type=tf.int32
    )
    last_count = tf.gather(hist, last, batch_dims=1)
    step = (tf.reduce_sum(hist, axis=1) - last_count) // 255
    cum = tf.cumsum(hist, axis=1, exclusive=True)
    safe = tf.maximum(step, 1)[:, None]
    lut = tf.minimum((cum + safe // 2) // safe, 255)
    lut = tf.where((step > 0)[:, None], lut, tf.range(256)[None])
    out = tf.gather(lut, tf.reshape(pixels, [batch * channels, -1]), batch_dims=1)
    out = tf.transpose(tf.reshape(out, [batch, channels, -1]), [0, 2, 1])
    return tf.cast(tf.reshape(out, shape), tf.float32)


def equalize(image, level, sign):
    """`ImageOps.equalize` per channel."""
    del level, sign
    return tf.cast(_equalize(tf.cast(image, tf.float32)[None])[0], tf.uint8)


def invert(image, level, sign):
    """`ImageOps.invert`."""
    del level, sign
    return 255 - image


def posterize(image, level, sign):
    """timm PosterizeIncreasing: keep `4 - int(4 level)` high bits."""
    del sign
    bits = 4 - tf.cast(tf.floor(level * 4.0), tf.int32)
    mask = tf.bitwise.left_shift(255, 8 - bits) % 256
    return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


def solarize(image, level, sign):
    """timm SolarizeIncreasing: invert pixels `>= 256 - int(256 level)`."""
    del sign
    threshold = 256 - tf.cast(tf.floor(level * 256.0), tf.int32)
    return tf.where(tf.cast(image, tf.int32) >= threshold, 255 - image, image)


def solarize_add(image, level, sign):
    """timm `solarize_add`: add `int(110 level)` to pixels below 128."""
    del sign
    add = tf.cast(tf.floor(level * 110.0), tf.int32)
    pixels = tf.cast(image, tf.int32)
    out = tf.where(pixels < 128, tf.minimum(pixels + add, 255), pixels)
    return tf.cast(out, tf.uint8)


def color(image, level, sign):
    """`ImageEnhance.Color`: blend with the grey image."""
    grey = tf.broadcast_to(_grey(image), tf.shape(image))
    return _blend(grey, image, _enhance_factor(level, sign))


def contrast(image, level, sign):
    """`ImageEnhance.Contrast`: blend with the grey image's rounded mean."""
    mean = tf.floor(tf.reduce_mean(tf.cast(_grey(image), tf.float64)) + 0.5)
    return _blend(tf.cast(mean, tf.float32), image, _enhance_factor(level, sign))


def brightness(image, level, sign):
    """`ImageEnhance.Brightness`: blend with black."""
    return _blend(tf.zeros([], tf.float32), image, _enhance_factor(level, sign))


def sharpness(image, level, sign):
    """`ImageEnhance.Sharpness`: blend with PIL's SMOOTH filter (borders kept)."""
    pixels = tf.cast(image, tf.float32)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    # SMOOTH: 3x3 ones with 5 in the centre, / 13, rounded (as sums of slices).
    total = 4.0 * pixels[1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total += pixels[dy : height - 2 + dy, dx : width - 2 + dx]
    smooth = tf.floor(tf.clip_by_value(total / 13.0, 0.0, 255.0) + 0.5)
    inner = tf.pad(smooth - pixels[1:-1, 1:-1], [[1, 1], [1, 1], [0, 0]])
    return _blend(pixels + inner, image, _enhance_factor(level, sign))


def _affine(image, matrix, fill):
    """PIL `transform(AFFINE, matrix)` (output -> input, pixel centres), bilinear.

    Like PIL: an output pixel whose source point lies off the image gets
    `fill`; one on it interpolates with the edge pixels repeated, and the
    result is truncated. Gathers, so that XLA compiles it.

    Args:
        image: uint8 `[H, W, C]`.
        matrix: six float32 scalars `(a, b, c, d, e, f)`: the input point of
            output point `(x, y)` is `(a x + b y + c, d x + e y + f)`.
        fill: per-channel fill colour (sequence of `C` ints).
    """
    a, b, c, d, e, f = matrix
    rows, cols = tf.shape(image)[0], tf.shape(image)[1]
    height, width = _size(image)
    # The source point of each output pixel centre, in PIL's coordinates.
    x = tf.range(width)[None, :] + 0.5
    y = tf.range(height)[:, None] + 0.5
    xin, yin = a * x + b * y + c, d * x + e * y + f
    inside = (xin >= 0) & (xin < width) & (yin >= 0) & (yin < height)
    xs, ys = xin - 0.5, yin - 0.5
    x0, y0 = tf.floor(xs), tf.floor(ys)
    dx, dy = (xs - x0)[..., None], (ys - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    left, right = (tf.clip_by_value(x0 + i, 0, cols - 1) for i in (0, 1))
    top, bottom = (tf.clip_by_value(y0 + i, 0, rows - 1) for i in (0, 1))
    flat = tf.cast(tf.reshape(image, [-1, image.shape[-1]]), tf.float32)

    def at(row, col):
        return tf.gather(flat, row * cols + col)

    upper = at(top, left)
    upper += dx * (at(top, right) - upper)
    lower = at(bottom, left)
    lower += dx * (at(bottom, right) - lower)
    out = tf.floor(upper + dy * (lower - upper))
    out = tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)
    fill = tf.constant([int(v) for v in fill], tf.uint8)
    return tf.where(inside[..., None], out, fill)


def _size(image):
    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[0], shape[1]


def rotate(image, level, sign, fill):
    """`Image.rotate(30 level sign)` about the centre (counter-clockwise)."""
    height, width = _size(image)
    angle = -sign * level * 30.0 * math.pi / 180.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return _affine(image, (cos, sin, c, -sin, cos, f), fill)


def shear_x(image, level, sign, fill):
    """timm `shear_x`: `(1, 0.3 level sign, 0, 0, 1, 0)`."""
    one, zero = tf.ones([]), tf.zeros([])
    return _affine(image, (one, sign * level * 0.3, zero, zero, one, zero), fill)


def shear_y(image, level, sign, fill):
    """timm `shear_y`: `(1, 0, 0, 0.3 level sign, 1, 0)`."""
    one, zero = tf.ones([]), tf.zeros([])
    return _affine(image, (one, zero, zero, sign * level * 0.3, one, zero), fill)


def translate_x(image, level, sign, fill):
    """timm `translate_x_rel`: shift by `0.45 level sign` of the width."""
    one, zero = tf.ones([]), tf.zeros([])
    pixels = sign * level * 0.45 * _size(image)[1]
    return _affine(image, (one, zero, pixels, zero, one, zero), fill)


def translate_y(image, level, sign, fill):
    """timm `translate_y_rel`: shift by `0.45 level sign` of the height."""
    one, zero = tf.ones([]), tf.zeros([])
    pixels = sign * level * 0.45 * _size(image)[0]
    return _affine(image, (one, zero, zero, zero, one, pixels), fill)


PIXEL_OPS = {
    "auto_contrast": auto_contrast,
    "equalize": equalize,
    "invert": invert,
    "posterize": posterize,
    "solarize": solarize,
    "solarize_add": solarize_add,
    "color": color,
    "contrast": contrast,
    "brightness": brightness,
    "sharpness": sharpness,
}
GEOMETRIC_OPS = {
    "rotate": rotate,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
}
