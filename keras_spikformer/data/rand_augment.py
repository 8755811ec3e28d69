"""timm's RandAugment, per image, as `tf.data` map code.

Per image and per layer (timm's `n`, 2 on ImageNet, 1 for CIFAR): pick one
op uniformly (with replacement), apply it with probability `prob` (0.5) at
magnitude `m` plus Gaussian noise `mstd` (clipped to 0..10), with a random
sign where the op has one. Only the chosen op runs (`tf.switch_case`) and
images stay `uint8` throughout: the ops are PIL's integer formulas
(`rand_augment_ops`).

`augment_image(image, seed)` is the streaming pipeline's per-example form:
its draws are stateless, from the example's seed, so a resumed run replays
them. Calling the object on a batch (the in-memory path) maps the same
function over the images with seeds from a stateful generator.

References:
    arXiv 2209.15425 (Spikformer); timm `auto_augment.py`
    (`rand-m9-mstd0.5-inc1`, `RandAugment`, `AugmentOp`).
"""

import functools

import tensorflow as tf

from keras_spikformer.data.augment_utils import make_generator
from keras_spikformer.data.rand_augment_ops import (  # noqa: F401 (re-export)
    GEOMETRIC_OPS,
    PIXEL_OPS,
    _equalize,
)

# "timm": timm's `_RAND_INCREASING_TRANSFORMS` (`inc1`, the ImageNet
# reference). "cifar_snn": the reduced set of the CIFAR reference's
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

# timm's `img_mean` fill for geometric ops: round(255 * ImageNet mean).
DEFAULT_FILL = (124.0, 116.0, 104.0)


class RandAugment:
    """timm's RandAugment on `uint8` (or 0..255 float) images (see module doc).

    Args:
        magnitude: float, timm scale 0..10 (recipes: 9).
        num_ops: int, ops per image (timm's `n`; 2 default, 1 for CIFAR).
        magnitude_std: float, timm's `mstd` (Gaussian noise on the magnitude).
        ops: str or tuple, a key of `RAND_AUGMENT_OPS` or op names.
        prob: float, probability of applying each chosen op (timm: 0.5).
        seed: int or `None`, for the batch call's generator.
        fill: per-channel fill of geometric ops. Defaults to timm's
            `img_mean` for the ImageNet mean.

    Example:
    >>> ra = RandAugment(magnitude=9, num_ops=2, magnitude_std=0.5)
    >>> image = ra.augment_image(uint8_image, seed=[0, 5])  # doctest: +SKIP
    """

    def __init__(
        self,
        magnitude=9,
        num_ops=2,
        magnitude_std=0.5,
        ops="timm",
        prob=0.5,
        seed=None,
        fill=DEFAULT_FILL,
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
        self.fill = tuple(float(f) for f in fill)
        self.rng = make_generator(seed)
        # One XLA program per image shape: the ops fuse into a few passes
        # over the pixels (~4x less CPU than op by op in the tf.data map).
        self._compiled = tf.function(self._augment, jit_compile=True)

    def apply_op(self, name, image, level, sign):
        """One op by name on a `uint8 [H, W, C]` image (`level` in [0, 1])."""
        if name in GEOMETRIC_OPS:
            channels = image.shape[-1]
            fill = (self.fill * channels)[:channels] if channels != 3 else self.fill
            return GEOMETRIC_OPS[name](image, level, sign, fill)
        return PIXEL_OPS[name](image, level, sign)

    def augment_image(self, image, seed):
        """RandAugment of one `uint8 [H, W, C]` image with stateless `seed` ([2] ints).

        Returns:
            `uint8 [H, W, C]`, the same static shape.
        """
        image = tf.convert_to_tensor(image)
        if image.dtype != tf.uint8:
            image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        # The draws stay outside XLA, whose stateless RNG is another algorithm.
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        draws = tf.random.stateless_uniform([self.num_ops, 3], seeds[0])
        noise = tf.random.stateless_normal([self.num_ops], seeds[1])
        if image.shape.is_fully_defined():
            return self._compiled(image, draws, noise)
        return self._augment(image, draws, noise)

    def _augment(self, image, draws, noise):
        shape = image.shape
        num = len(self.ops)
        for k in range(self.num_ops):
            choice = tf.minimum(tf.cast(draws[k, 0] * num, tf.int32), num - 1)
            # timm: `if random.random() > prob: skip`; index `num`: no op.
            choice = tf.where(draws[k, 1] > self.prob, num, choice)
            magnitude = self.magnitude + noise[k] * self.magnitude_std
            level = tf.clip_by_value(magnitude, 0.0, 10.0) / 10.0
            sign = tf.where(draws[k, 2] > 0.5, -1.0, 1.0)
            branches = [
                functools.partial(self.apply_op, name, image, level, sign)
                for name in self.ops
            ]
            branches.append(lambda x=image: x)
            image = tf.ensure_shape(tf.switch_case(choice, branches), shape)
        return image

    def __call__(self, images):
        """RandAugment of a batch `[B, H, W, C]` (0..255); float32 0..255 out."""
        images = tf.convert_to_tensor(images)
        if images.dtype != tf.uint8:
            images = tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)
        seeds = tf.transpose(self.rng.make_seeds(tf.shape(images)[0]))
        out = tf.map_fn(
            lambda args: self.augment_image(*args),
            (images, seeds),
            fn_output_signature=tf.TensorSpec(images.shape[1:], tf.uint8),
        )
        return tf.cast(tf.ensure_shape(out, images.shape), tf.float32)
