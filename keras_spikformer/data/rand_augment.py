"""timm-style RandAugment on batches of 0..255 images, as `tf.data` map code.

timm's magnitude `m` (0..10, here 9) sets each op's strength through its own
formula; `keras.layers.RandAugment` instead shares one `factor` between all
its ops, with different meanings per op (a rotation `factor` is a fraction of
360 degrees, a translation one a fraction of the image, posterisation keeps
`int(8 * factor)` bits), picks the same ops for a whole batch, and applies
them always. No single `factor` reproduces m9 (rotation needs 0.075, shear
0.27, translation 0.405, solarize threshold 0.1), so `RandAugment` below keeps
timm's op list and per-op formulas and builds each op from the matching Keras
layer (`RandomRotation`, `RandomShear`, `RandomTranslation`, `AutoContrast`,
`RandomPosterization`) or a few TensorFlow ops (PIL's enhance blends,
solarize, equalize); ops are chosen per image and each applied with
probability 0.5, as timm does. The magnitude noise (`mstd`) is approximated by
a uniform draw in `[m - mstd, m + mstd]` for the Keras geometric layers (timm:
Gaussian).

References:
    arXiv 2209.15425 (Spikformer); timm `auto_augment.py` (`rand-m9-mstd0.5-inc1`).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_spikformer.data.augment_utils import make_generator, sub_seed

# ImageNet reference). "cifar_snn": the reduced set of the CIFAR reference's
# `aa_snn.py` (no colour ops).
RAND_AUGMENT_OPS = {
    "timm": (
        "auto_contrast",
        "equalize",
        "invert",
        "rotate",
        "posterize",
        "solarize",
        "solarize_add",
        "color",
        "contrast",
        "brightness",
        "sharpness",
        "shear_x",
        "shear_y",
        "translate_x",
        "translate_y",
    ),
    "cifar_snn": ("equalize", "rotate", "shear_x", "translate_x", "translate_y"),
}

_FILL = 128.0  # timm's fill colour for geometric ops (img_mean ~ 124..128)


def _mirror_sign(images, negative, axis):
    return tf.where(negative[:, None, None, None], tf.reverse(images, [axis]), images)


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
    hist = tf.math.bincount(
        tf.reshape(flat, [-1]), minlength=256 * batch * channels, dtype=tf.int32
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


class RandAugment:
    """timm-style RandAugment on a batch of 0..255 images (see module doc).

    Args:
        magnitude: float, timm scale 0..10 (recipes: 9).
        num_ops: int, ops per image (timm's `n`; 2 default, 1 for CIFAR).
        magnitude_std: float, timm's `mstd`.
        ops: str or tuple, a key of `RAND_AUGMENT_OPS` or op names.
        prob: float, probability of applying each chosen op (timm: 0.5).
        seed: int or `None`.
    """

    def __init__(
        self, magnitude=9, num_ops=2, magnitude_std=0.5, ops="timm", prob=0.5, seed=None
    ):
        if isinstance(ops, str):
            if ops not in RAND_AUGMENT_OPS:
                raise ValueError(
                    f"Unknown RandAugment op set {ops!r}; choose one of "
                    f"{sorted(RAND_AUGMENT_OPS)} or pass a tuple of op names."
                )
            ops = RAND_AUGMENT_OPS[ops]
        unknown = sorted(set(ops) - set(RAND_AUGMENT_OPS["timm"]))
        if unknown:
            raise ValueError(
                f"Unknown RandAugment ops {unknown}; valid: {RAND_AUGMENT_OPS['timm']}."
            )
        if not 0 <= magnitude <= 10:
            raise ValueError(
                f"RandAugment magnitude {magnitude} is outside timm's 0..10 scale."
            )
        self.magnitude = float(magnitude)
        self.num_ops = int(num_ops)
        self.magnitude_std = float(magnitude_std)
        self.ops = tuple(ops)
        self.prob = float(prob)
        self.rng = make_generator(seed)
        lo = max(0.0, self.magnitude - self.magnitude_std) / 10.0
        hi = min(10.0, self.magnitude + self.magnitude_std) / 10.0
        geo = dict(fill_mode="constant", fill_value=_FILL, interpolation="bilinear")
        self._layers = {
            # Fractions of 360 degrees; sign from mirroring (see _apply_op).
            "rotate": keras.layers.RandomRotation(
                (lo * 30 / 360, hi * 30 / 360), seed=sub_seed(seed, 1), **geo
            ),
            # RandomShear draws its own sign.
            "shear_x": keras.layers.RandomShear(
                x_factor=(lo * 0.3, hi * 0.3),
                y_factor=0.0,
                seed=sub_seed(seed, 2),
                **geo,
            ),
            "shear_y": keras.layers.RandomShear(
                x_factor=0.0,
                y_factor=(lo * 0.3, hi * 0.3),
                seed=sub_seed(seed, 3),
                **geo,
            ),
            "translate_x": keras.layers.RandomTranslation(
                0.0, (lo * 0.45, hi * 0.45), seed=sub_seed(seed, 4), **geo
            ),
            "translate_y": keras.layers.RandomTranslation(
                (lo * 0.45, hi * 0.45), 0.0, seed=sub_seed(seed, 5), **geo
            ),
            "auto_contrast": keras.layers.AutoContrast(value_range=(0, 255)),
            # timm PosterizeIncreasing keeps 4 - int(4 m / 10) bits (1 at m9).
            "posterize": keras.layers.RandomPosterization(
                factor=(self._posterize_bits(),) * 2, value_range=(0, 255)
            ),
        }

    def _posterize_bits(self):
        return max(1, 4 - int(self.magnitude / 10.0 * 4))

    def _level(self, batch):
        """Per-image magnitude / 10, timm's Gaussian noise, clipped to [0, 1]."""
        noise = self.rng.normal([batch]) * self.magnitude_std
        return tf.clip_by_value((self.magnitude + noise) / 10.0, 0.0, 1.0)

    def _sign(self, batch):
        return tf.where(self.rng.uniform([batch]) < 0.5, -1.0, 1.0)

    def _enhance(self, images, degenerate):
        # PIL ImageEnhance with timm's "increasing" factor 1 +- 0.9 * level.
        batch = tf.shape(images)[0]
        factor = 1.0 + self._sign(batch) * 0.9 * self._level(batch)
        factor = tf.maximum(factor, 0.1)[:, None, None, None]
        return tf.clip_by_value(degenerate + factor * (images - degenerate), 0, 255)

    def _apply_op(self, name, images):
        batch = tf.shape(images)[0]
        if name in ("rotate", "translate_x", "translate_y"):
            axis = 1 if name == "translate_y" else 2
            negative = self.rng.uniform([batch]) < 0.5
            out = self._layers[name](_mirror_sign(images, negative, axis))
            return _mirror_sign(out, negative, axis)
        if name in self._layers:
            return self._layers[name](images)
        if name == "equalize":
            return _equalize(images)
        if name == "invert":
            return 255.0 - images
        if name == "solarize":
            # timm SolarizeIncreasing: invert pixels >= 256 - level * 256.
            threshold = 256.0 - tf.floor(self._level(batch) * 256.0)
            threshold = threshold[:, None, None, None]
            return tf.where(images >= threshold, 255.0 - images, images)
        if name == "solarize_add":
            add = tf.floor(self._level(batch) * 110.0)[:, None, None, None]
            return tf.where(images < 128.0, tf.minimum(images + add, 255.0), images)
        gray = tf.image.rgb_to_grayscale(images) if images.shape[-1] == 3 else images
        if name == "color":
            return self._enhance(images, gray)
        if name == "contrast":
            mean = tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True)
            return self._enhance(images, mean)
        if name == "brightness":
            return self._enhance(images, tf.zeros_like(images))
        if name == "sharpness":
            channels = images.shape[-1]
            kernel = np.full((3, 3), 1.0, "float32")
            kernel[1, 1] = 5.0
            kernel = np.tile((kernel / 13.0)[:, :, None, None], (1, 1, channels, 1))
            smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID")
            # PIL keeps the border pixels unchanged.
            smooth = tf.pad(
                smooth - images[:, 1:-1, 1:-1, :], [[0, 0], [1, 1], [1, 1], [0, 0]]
            )
            return self._enhance(images, images + smooth)
        raise ValueError(f"Unknown RandAugment op {name!r}.")

    def _apply_op_if_any(self, name, part):
        def apply():
            return tf.ensure_shape(self._apply_op(name, part), part.shape)

        return tf.cond(tf.shape(part)[0] > 0, apply, lambda: part)

    def __call__(self, images):
        images = tf.cast(images, tf.float32)
        batch = tf.shape(images)[0]
        num = len(self.ops)
        for _ in range(self.num_ops):
            choice = self.rng.uniform([batch], 0, num, dtype=tf.int32)
            skip = self.rng.uniform([batch]) >= self.prob
            choice = tf.where(skip, num, choice)  # index `num`: unchanged
            parts = tf.dynamic_partition(images, choice, num + 1)
            where = tf.dynamic_partition(tf.range(batch), choice, num + 1)
            # An op runs only on a non-empty part (Keras layers reject empty
            # batches), and only on the images that drew it.
            outs = [
                self._apply_op_if_any(name, part)
                for name, part in zip(self.ops, parts[:num], strict=True)
            ]
            outs.append(parts[num])
            images = tf.dynamic_stitch(where, outs)
            images = tf.clip_by_value(images, 0.0, 255.0)
        return images
