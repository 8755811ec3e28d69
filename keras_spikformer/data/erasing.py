"""timm's RandomErasing on normalised batches, vectorised (one box per image).

Per image, with probability `prob`: up to 10 tries of an area fraction
`U(0.02, 1/3)` and an aspect `exp(U(log 0.3, log 1/0.3))`; the first box
with `h < H` and `w < W` is placed uniformly and filled with zeros
(`"const"`) or per-pixel normal noise (`"pixel"`).

References:
    timm `random_erasing.py` (`RandomErasing`, `reprob`, `remode`); Zhong et
    al., arXiv 1708.04896.
"""

import math

import tensorflow as tf

from keras_spikformer.data.augment_utils import make_generator, sub_seed

ERASING_MODES = ("const", "pixel")
_ATTEMPTS = 10


class RandomErasing:
    """Erases one random box per image of a normalised batch `[B, H, W, C]`.

    Args:
        prob: float, probability of erasing an image.
        mode: `"const"` (zeros) or `"pixel"` (normal noise).
        min_area, max_area: area fractions. Default `0.02`, `1/3`.
        min_aspect: float; aspects lie in `[min_aspect, 1 / min_aspect]`.
            Defaults to `0.3`.
        seed: int or `None`.

    Example:
    >>> erase = RandomErasing(0.25, seed=0)
    >>> images = erase(images)  # doctest: +SKIP
    """

    def __init__(
        self,
        prob,
        mode="const",
        min_area=0.02,
        max_area=1 / 3,
        min_aspect=0.3,
        seed=None,
    ):
        if mode not in ERASING_MODES:
            raise ValueError(
                f"random_erasing_mode {mode!r} is not supported; use 'const' "
                "(zeros after normalisation, the reference) or 'pixel'."
            )
        self.prob = float(prob)
        self.mode = mode
        self.area = (float(min_area), float(max_area))
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
        self.rng = make_generator(sub_seed(seed, 13))

    def boxes(self, batch, height, width):
        """Per image `(erase, top, left, h, w)`: timm's tries on uniform draws."""
        draws = self.rng.uniform([batch, 2 * _ATTEMPTS + 3], dtype=tf.float64)
        area = float(height * width)
        n = _ATTEMPTS
        target = area * (self.area[0] + (self.area[1] - self.area[0]) * draws[:, :n])
        lo, hi = self.log_aspect
        aspect = tf.exp(lo + (hi - lo) * draws[:, n : 2 * n])
        h = tf.round(tf.sqrt(target * aspect))
        w = tf.round(tf.sqrt(target / aspect))
        ok = (w < width) & (h < height)
        first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
        h = tf.gather(h, first, batch_dims=1)
        w = tf.gather(w, first, batch_dims=1)
        erase = (draws[:, 2 * n] < self.prob) & tf.reduce_any(ok, axis=1)
        top = tf.floor(draws[:, 2 * n + 1] * (height - h + 1))
        left = tf.floor(draws[:, 2 * n + 2] * (width - w + 1))
        return erase, top, left, h, w

    def __call__(self, images):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        erase, top, left, h, w = self.boxes(batch, height, width)
        rows = tf.range(height, dtype=tf.float64)[None, :, None]
        cols = tf.range(width, dtype=tf.float64)[None, None, :]
        inside = (
            erase[:, None, None]
            & (rows >= top[:, None, None])
            & (rows < (top + h)[:, None, None])
            & (cols >= left[:, None, None])
            & (cols < (left + w)[:, None, None])
        )
        if self.mode == "const":
            fill = tf.zeros_like(images)
        else:
            fill = self.rng.normal(tf.shape(images), dtype=images.dtype)
        out = tf.where(inside[..., None], fill, images)
        out.set_shape(images.shape)
        return out


def make_random_erasing(prob, mode="const", seed=None):
    """A `RandomErasing` for normalised batches, or `None` when `prob` is 0.

    Args:
        prob: float, probability of erasing one box per image.
        mode: `"const"` or `"pixel"`.
        seed: int or `None`.

    Returns:
        `RandomErasing` or `None`.

    Example:
    >>> erase = make_random_erasing(0.25, seed=0)
    """
    prob = float(prob or 0.0)
    if prob <= 0:
        return None
    return RandomErasing(prob, mode, seed=seed)
