"""Per-example decoding with the reference's geometry: decode late, crop while decoding.

Each transform maps one encoded image (JPEG, PNG, GIF or BMP bytes) to a
`uint8 [height, width, channels]` tensor of static shape at the model size.
JPEGs are cropped while decoding (`tf.io.decode_and_crop_jpeg`: only the
crop's blocks are decoded); other formats are decoded whole, then sliced.
Grey-scale, CMYK and RGBA inputs come out with `channels` channels. The
random draws are stateless, from a per-example seed, so an example's crop
and flip depend only on that seed.

References:
    timm `transforms_imagenet_train` / `transforms_imagenet_eval`;
    torchvision `RandomCrop(padding)` for the CIFAR recipe.
"""

import tensorflow as tf

from keras_spikformer.data import crops

# Decoded pixels one image may have (PIL's `MAX_IMAGE_PIXELS`, about 89.5 M);
# larger files (decompression bombs: a 20000x20000 PNG of 390 KB decodes to
# 1.2 GB) are skipped and counted unread, from the size in their header.
MAX_IMAGE_PIXELS = 89_478_485


def _header_int(contents, pos, size, big_endian):
    raw = tf.io.decode_raw(tf.strings.substr(contents, pos, size), tf.uint8)
    raw = tf.cast(tf.ensure_shape(raw, [size]), tf.int64)
    order = tf.range(size, dtype=tf.int64)
    shifts = 8 * (size - 1 - order) if big_endian else 8 * order
    return tf.reduce_sum(tf.bitwise.left_shift(raw, shifts))


def _gif_frame_bound(contents):
    """At most this many frames: each image descriptor (`,`) after the first
    follows a block terminator (a zero byte)."""
    data = tf.io.decode_raw(contents, tf.uint8)
    pairs = tf.logical_and(tf.equal(data[:-1], 0), tf.equal(data[1:], 44))
    return tf.reduce_sum(tf.cast(pairs, tf.int64)) + 1


def declared_pixels(contents):
    """Pixels an encoded image decodes to, read from its header (no decoding).

    JPEG and PNG: height x width. GIF: the screen size times a bound on the
    frame count (TensorFlow decodes every frame). BMP: |height| x width.
    Other formats, and headers too short to hold the size, give -1.

    Args:
        contents: scalar string tensor, encoded image bytes.

    Returns:
        int64 scalar tensor.

    Example:
    >>> declared_pixels(tf.constant(png_bytes))  # doctest: +SKIP
    <tf.Tensor: shape=(), dtype=int64, numpy=400000000>
    """
    head = tf.strings.substr(contents, 0, 8)

    def sized(pos, size, big_endian, count):
        def read():
            h = _header_int(contents, pos + size, size, big_endian)
            w = _header_int(contents, pos, size, big_endian)
            return (
                tf.abs(tf.cast(tf.bitcast(tf.cast(h, tf.uint32), tf.int32), tf.int64))
                * w
                * count()
            )

        return read

    def one():
        return tf.constant(1, tf.int64)

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(contents), tf.int64)
        return shape[0] * shape[1]

    long_enough = tf.strings.length(contents) >= 26
    branches = [
        (tf.io.is_jpeg(contents), jpeg),
        (head == b"\x89PNG\r\n\x1a\n", sized(16, 4, True, one)),
        (
            tf.strings.substr(head, 0, 4) == b"GIF8",
            sized(6, 2, False, lambda: _gif_frame_bound(contents)),
        ),
        (tf.strings.substr(head, 0, 2) == b"BM", sized(18, 4, False, one)),
    ]
    pixels = tf.constant(-1, tf.int64)
    for condition, branch in reversed(branches):
        pixels = tf.cond(
            tf.logical_and(condition, long_enough), branch, lambda p=pixels: p
        )
    return pixels


def check_declared_size(contents):
    """`contents`, or an `InvalidArgumentError` (the pipeline's counted skip)
    for an unknown format or more than `MAX_IMAGE_PIXELS` declared pixels."""
    pixels = declared_pixels(contents)
    ok = tf.logical_and(pixels > 0, pixels <= MAX_IMAGE_PIXELS)
    with tf.control_dependencies(
        [
            tf.debugging.Assert(
                ok,
                [
                    "Image skipped: not JPEG/PNG/GIF/BMP, or more pixels than "
                    f"MAX_IMAGE_PIXELS={MAX_IMAGE_PIXELS}:",
                    pixels,
                ],
            )
        ]
    ):
        return tf.identity(contents)


def decode_crop(contents, channels, box_fn):
    """Decodes `contents` and crops it to `box_fn(height, width)`.

    Args:
        contents: scalar string tensor, encoded image bytes.
        channels: 1 or 3.
        box_fn: `(height, width) -> (top, left, crop_height, crop_width)`.

    Returns:
        `uint8 [crop_height, crop_width, channels]`.
    """

    contents = check_declared_size(contents)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(contents)
        box = tf.stack(box_fn(shape[0], shape[1]))
        return tf.io.decode_and_crop_jpeg(
            contents, box, channels=channels, dct_method="INTEGER_ACCURATE"
        )

    def other():
        # GIF and BMP decode to RGB only: grey-scale is PIL's `convert("L")`.
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        if channels == 1:
            grey = tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))
            image = tf.cast(tf.clip_by_value(tf.round(grey), 0.0, 255.0), tf.uint8)
        shape = tf.shape(image)
        top, left, h, w = box_fn(shape[0], shape[1])
        return tf.slice(image, [top, left, 0], [h, w, channels])

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    return tf.ensure_shape(image, [None, None, channels])


def _full_box(height, width):
    return tf.constant(0, tf.int32), tf.constant(0, tf.int32), height, width


def _resize_uint8(image, size, interpolation):
    """Antialiased resize, rounded to 0..255 like PIL's 8-bit output."""
    # In float: "nearest" would otherwise keep uint8, which clipping refuses.
    image = tf.cast(image, tf.float32)
    out = tf.image.resize(image, size, method=interpolation, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


class EvalExampleTransform:
    """timm's eval transform: resize (shorter side to `size / crop_pct`), centre crop.

    Args:
        size: `(height, width)` of the model.
        channels: 1 or 3.
        crop_pct: float in (0, 1], timm's `crop_pct`. Defaults to `1.0`.
        interpolation: `"bicubic"` (default), `"bilinear"`, ...

    Example:
    >>> transform = EvalExampleTransform((224, 224), 3, crop_pct=0.875)
    >>> image, label = transform(jpeg_bytes, 7, seed=None)  # doctest: +SKIP
    """

    def __init__(self, size, channels=3, crop_pct=1.0, interpolation="bicubic"):
        if not 0 < crop_pct <= 1:
            raise ValueError(f"eval crop_ratio must be in (0, 1], got {crop_pct}.")
        self.size = tuple(size)
        self.channels = int(channels)
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation

    def geometry(self, image):
        """Resize then centre-crop a decoded `uint8` image."""
        shape = tf.shape(image)
        new_h, new_w = crops.eval_resize_shape(
            shape[0], shape[1], self.size, self.crop_pct
        )
        image = _resize_uint8(image, tf.stack([new_h, new_w]), self.interpolation)
        top, left = crops.center_crop_offsets(new_h, new_w, self.size)
        image = tf.slice(image, [top, left, 0], [*self.size, self.channels])
        return tf.ensure_shape(image, [*self.size, self.channels])

    def __call__(self, contents, label, seed=None):
        image = decode_crop(contents, self.channels, _full_box)
        return self.geometry(image), tf.cast(label, tf.int32)


class TrainExampleTransform:
    """The recipe's per-example training geometry: crop, resize, flip.

    `random_resized_crop_scale` set: timm's RandomResizedCrop (10 tries, then
    the centre-crop fallback), cropped while decoding, resized to `size`.
    `padding` set (CIFAR): resize to `size` if needed, zero-pad, random crop.
    Neither: the eval geometry. Then a horizontal flip with probability 0.5.

    Args:
        size: `(height, width)`.
        channels: 1 or 3.
        padding: int, RandomCrop padding (0: none).
        scale, ratio: RandomResizedCrop ranges (`scale=None`: no RRC).
        interpolation: resize method. Defaults to `"bicubic"`.
        flip: bool, random horizontal flip.
        crop_pct: eval `crop_pct` for the no-crop case.

    Example:
    >>> t = TrainExampleTransform((224, 224), scale=(0.08, 1.0), flip=True)
    >>> image, label = t(jpeg_bytes, 3, seed=[0, 17])  # doctest: +SKIP
    """

    def __init__(
        self,
        size,
        channels=3,
        padding=0,
        scale=None,
        ratio=(3 / 4, 4 / 3),
        interpolation="bicubic",
        flip=False,
        crop_pct=1.0,
    ):
        self.size = tuple(size)
        self.channels = int(channels)
        self.padding = int(padding or 0)
        self.scale = None if scale is None else tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.interpolation = interpolation
        self.flip = bool(flip)
        self.eval = EvalExampleTransform(size, channels, crop_pct, interpolation)

    def crop_box(self, height, width, seed):
        """The RandomResizedCrop box for this example's `seed`."""
        draws = tf.random.stateless_uniform(
            [2 * crops.RRC_ATTEMPTS + 2], seed, dtype=tf.float64
        )
        return crops.random_resized_crop_box(
            height, width, draws, self.scale, self.ratio
        )

    def __call__(self, contents, label, seed):
        seed = tf.cast(seed, tf.int64)
        crop_seed, pad_seed, flip_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        if self.scale is not None:
            image = decode_crop(
                contents,
                self.channels,
                lambda h, w: self.crop_box(h, w, crop_seed),
            )
            image = _resize_uint8(image, self.size, self.interpolation)
        elif self.padding:
            image = decode_crop(contents, self.channels, _full_box)
            shape = tf.shape(image)
            image = tf.cond(
                tf.reduce_all(shape[:2] == self.size),
                lambda: image,
                lambda: _resize_uint8(image, self.size, self.interpolation),
            )
            image = self._pad_crop(image, pad_seed)
        else:
            image = self.eval.geometry(decode_crop(contents, self.channels, _full_box))
        if self.flip:
            mirror = tf.random.stateless_uniform([], flip_seed) < 0.5
            image = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
        return tf.ensure_shape(image, [*self.size, self.channels]), tf.cast(
            label, tf.int32
        )

    def _pad_crop(self, image, seed):
        p = self.padding
        image = tf.pad(image, [[p, p], [p, p], [0, 0]])
        offsets = tf.random.stateless_uniform(
            [2], seed, minval=0, maxval=2 * p + 1, dtype=tf.int32
        )
        return tf.slice(image, [offsets[0], offsets[1], 0], [*self.size, self.channels])
