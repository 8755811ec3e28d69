"""timm's `Mixup` in batch mode: MixUp or CutMix (switch), applied with a probability.

One `lam ~ Beta(alpha, alpha)` per batch; each image is mixed with the one
at the mirrored batch position (`x.flip(0)`); CutMix pastes a box of side
`sqrt(1 - lam)` times the image's, centred uniformly and clipped to the
image, and corrects `lam` to the pasted area. Labels are mixed with the
same `lam` (label smoothing is left to the loss: it is linear, so it
commutes with mixing).

References:
    timm `mixup.py` (`Mixup`, `rand_bbox`, `cutmix_bbox_and_lam`); Zhang et
    al., arXiv 1710.09412; Yun et al., arXiv 1905.04899.
"""

import tensorflow as tf

from keras_spikformer.data.augment_utils import make_generator, sub_seed


class MixUpCutMix:
    """MixUp and/or CutMix on `(images [B,H,W,C], one-hot labels [B,K])` batches.

    With both enabled, CutMix is chosen with probability `switch_prob` (timm's
    switch); the chosen mix applies to a batch with probability `prob`.
    `enabled` is a `tf.Variable` read at every batch (see `MixupOffCallback`).
    Only the chosen mix is computed.

    Args:
        mixup_alpha: float, Beta parameter of MixUp (0: off).
        cutmix_alpha: float, Beta parameter of CutMix (0: off).
        prob: float, probability of mixing a batch. Defaults to `1.0`.
        switch_prob: float, probability of CutMix when both are on. Defaults
            to `0.5`.
        seed: int or `None`.

    Example:
    >>> mix = MixUpCutMix(0.8, 1.0, seed=0)
    >>> images, labels = mix(images, one_hot_labels)  # doctest: +SKIP
    """

    def __init__(self, mixup_alpha, cutmix_alpha, prob=1.0, switch_prob=0.5, seed=None):
        self.mixup_alpha = float(mixup_alpha or 0.0)
        self.cutmix_alpha = float(cutmix_alpha or 0.0)
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(
                f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha} "
                f"and {self.cutmix_alpha}."
            )
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.rng = make_generator(sub_seed(seed, 16))
        self.enabled = tf.Variable(self.active, trainable=False, name="mixup_enabled")

    @property
    def active(self):
        """Whether any mixing is configured."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def _beta(self, alpha):
        seeds = self.rng.make_seeds(2)
        a = tf.random.stateless_gamma([], seeds[:, 0], alpha)
        b = tf.random.stateless_gamma([], seeds[:, 1], alpha)
        return a / (a + b)

    def _params(self):
        """`(apply, use_cutmix, lam)` for one batch, drawn as timm does."""
        apply = tf.logical_and(
            self.enabled.read_value(), self.rng.uniform([]) < self.prob
        )
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = self.rng.uniform([]) < self.switch_prob
            lam = tf.where(
                use_cutmix, self._beta(self.cutmix_alpha), self._beta(self.mixup_alpha)
            )
        elif self.mixup_alpha > 0:
            use_cutmix, lam = tf.constant(False), self._beta(self.mixup_alpha)
        else:
            use_cutmix, lam = tf.constant(True), self._beta(self.cutmix_alpha)
        return apply, use_cutmix, lam

    def _cutmix_box(self, height, width, lam):
        ratio = tf.sqrt(1.0 - lam)
        cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
        cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
        cy = self.rng.uniform([], 0, height, dtype=tf.int32)
        cx = self.rng.uniform([], 0, width, dtype=tf.int32)
        top = tf.clip_by_value(cy - cut_h // 2, 0, height)
        bottom = tf.clip_by_value(cy + cut_h // 2, 0, height)
        left = tf.clip_by_value(cx - cut_w // 2, 0, width)
        right = tf.clip_by_value(cx + cut_w // 2, 0, width)
        return top, bottom, left, right

    def draw(self, height, width):
        """One batch's random draws `(apply, use_cutmix, lam, box)` (see `apply`)."""
        apply, use_cutmix, lam = self._params()
        return apply, use_cutmix, lam, tf.stack(self._cutmix_box(height, width, lam))

    def apply(self, images, labels, params):
        """Mixes a batch with the draws of `draw` (XLA-compilable: no random ops)."""
        apply, use_cutmix, lam, box = params
        top, bottom, left, right = tf.unstack(box)
        height, width = images.shape[1], images.shape[2]

        rows = tf.range(height)[:, None]
        cols = tf.range(width)[None, :]
        inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
        inside = tf.cast(inside & apply & use_cutmix, images.dtype)
        area = tf.cast((bottom - top) * (right - left), tf.float32)
        cut_lam = 1.0 - area / float(height * width)
        lam = tf.where(apply, tf.where(use_cutmix, cut_lam, lam), 1.0)
        # One pass: own * images + other * mirrored images, per pixel. CutMix:
        # weights 0/1 inside the box (exact copies); MixUp: lam, 1 - lam.
        own = tf.where(apply & use_cutmix, 1.0 - inside, lam)[None, :, :, None]
        other = tf.where(apply & use_cutmix, inside, 1.0 - lam)[None, :, :, None]
        mixed = own * images + other * tf.reverse(images, [0])
        mixed_labels = lam * labels + (1.0 - lam) * tf.reverse(labels, [0])
        mixed.set_shape(images.shape)
        mixed_labels.set_shape(labels.shape)
        return mixed, mixed_labels

    def __call__(self, images, labels):
        if not self.active:
            return images, labels
        images = tf.convert_to_tensor(images)
        params = self.draw(images.shape[1], images.shape[2])
        return self.apply(images, labels, params)
