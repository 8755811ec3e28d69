"""timm's crop geometry: RandomResizedCrop boxes, pad-and-crop, eval resize and centre crop.

The box maths takes its random numbers as uniform draws in [0, 1), so the
same draws give the same boxes as timm's `RandomResizedCropAndInterpolation`
(`random.uniform(a, b) = a + (b - a) * u`, `random.randint(0, n) =
floor(u * (n + 1))`); it is vectorised over any leading dimensions and runs
in float64 like Python's floats.

References:
    timm `transforms.py` (`RandomResizedCropAndInterpolation.get_params`),
    `transforms_factory.py` (`transforms_imagenet_eval`); torchvision
    `Resize`, `CenterCrop`, `RandomCrop(padding)`.
"""

import math

import tensorflow as tf

RRC_ATTEMPTS = 10  # timm's tries before the centre-crop fallback


def random_resized_crop_box(height, width, draws, scale, ratio):
    """timm's RandomResizedCrop box `(top, left, crop_height, crop_width)`.

    Args:
        height, width: int tensors of shape `[...]`, the image size.
        draws: float tensor `[..., 2 * RRC_ATTEMPTS + 2]` of uniform [0, 1)
            draws: area fractions, log-aspect draws, then top and left.
        scale: `(min, max)` fraction of the image area.
        ratio: `(min, max)` aspect ratio (width / height).

    Returns:
        A tuple of four int32 tensors of shape `[...]`.
    """
    n = RRC_ATTEMPTS
    draws = tf.cast(draws, tf.float64)
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    area = (height * width)[..., None]
    target = area * (scale[0] + (scale[1] - scale[0]) * draws[..., :n])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(lo + (hi - lo) * draws[..., n : 2 * n])
    w = tf.round(tf.sqrt(target * aspect))
    h = tf.round(tf.sqrt(target / aspect))
    ok = (w <= width[..., None]) & (h <= height[..., None]) & (w > 0) & (h > 0)
    first = tf.argmax(tf.cast(ok, tf.int32), axis=-1, output_type=tf.int32)
    found = tf.reduce_any(ok, axis=-1)
    w = tf.gather(w, first, batch_dims=first.shape.rank)
    h = tf.gather(h, first, batch_dims=first.shape.rank)
    # The fallback: the whole image, cropped to the nearest allowed aspect.
    in_ratio = width / height
    fb_w = tf.where(
        in_ratio < min(ratio),
        width,
        tf.where(in_ratio > max(ratio), tf.round(height * max(ratio)), width),
    )
    fb_h = tf.where(in_ratio < min(ratio), tf.round(width / min(ratio)), height)
    w = tf.where(found, w, fb_w)
    h = tf.where(found, h, fb_h)
    top = tf.where(
        found,
        tf.floor(draws[..., 2 * n] * (height - h + 1)),
        tf.floor((height - h) / 2),
    )
    left = tf.where(
        found,
        tf.floor(draws[..., 2 * n + 1] * (width - w + 1)),
        tf.floor((width - w) / 2),
    )
    return tuple(tf.cast(v, tf.int32) for v in (top, left, h, w))


def eval_resize_shape(height, width, size, crop_pct):
    """The size timm's eval transform resizes to, before the centre crop.

    A square model size resizes the shorter side to `floor(size / crop_pct)`
    (the longer side is truncated like torchvision's `Resize(int)`); a
    non-square one resizes to `floor(size_i / crop_pct)` per side.

    Returns:
        `(new_height, new_width)` int32 tensors.
    """
    if size[0] != size[1]:
        return tuple(tf.constant(int(math.floor(s / crop_pct)), tf.int32) for s in size)
    short = tf.constant(float(math.floor(size[0] / crop_pct)), tf.float64)
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    portrait = width <= height
    long_side = tf.floor(short * tf.maximum(height, width) / tf.minimum(height, width))
    new_h = tf.where(portrait, long_side, short)
    new_w = tf.where(portrait, short, long_side)
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def center_crop_offsets(height, width, size):
    """torchvision's `CenterCrop` offsets: `round((side - crop) / 2)` (half to even)."""
    top = tf.round(tf.cast(height - size[0], tf.float64) / 2)
    left = tf.round(tf.cast(width - size[1], tf.float64) / 2)
    return tf.cast(top, tf.int32), tf.cast(left, tf.int32)


def resize(images, size, interpolation="bicubic"):
    """Antialiased resize to `size`, clipped to 0..255 (PIL's resize filters)."""
    images = tf.image.resize(images, size, method=interpolation, antialias=True)
    return tf.clip_by_value(images, 0.0, 255.0)


def pad_random_crop_batch(images, size, padding, rng):
    """torchvision's `RandomCrop(size, padding)` on a batch: zero pad, per-image crop."""
    images = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    oy = rng.uniform([batch], 0, height - size[0] + 1, dtype=tf.int32)
    ox = rng.uniform([batch], 0, width - size[1] + 1, dtype=tf.int32)
    rows = oy[:, None] + tf.range(size[0])[None]
    cols = ox[:, None] + tf.range(size[1])[None]
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def random_resized_crop_batch(images, size, scale, ratio, rng, interpolation):
    """timm's RandomResizedCrop on a batch of already-decoded images (per-image boxes).

    The streaming pipeline crops while decoding instead (`image_decode`); this
    is for in-memory arrays.
    """
    batch = tf.shape(images)[0]
    shape = tf.shape(images)
    draws = rng.uniform([batch, 2 * RRC_ATTEMPTS + 2])
    heights = tf.fill([batch], shape[1])
    widths = tf.fill([batch], shape[2])
    boxes = tf.stack(random_resized_crop_box(heights, widths, draws, scale, ratio), 1)

    def crop_one(args):
        image, box = args
        crop = tf.slice(image, [box[0], box[1], 0], [box[2], box[3], -1])
        return tf.image.resize(crop, size, method=interpolation, antialias=True)

    out = tf.map_fn(
        crop_one, (images, boxes), fn_output_signature=tf.TensorSpec(None, tf.float32)
    )
    out = tf.ensure_shape(out, [images.shape[0], size[0], size[1], images.shape[-1]])
    return tf.clip_by_value(out, 0.0, 255.0)
