"""Event-frame training augmentation of the CIFAR10-DVS / DVS128 Gesture references.

References:
    arXiv 2209.15425 (Spikformer); the references' `SNNAugmentWide` and MixUp.
"""

import math

import keras
import tensorflow as tf

from keras_spikformer.data.augment_utils import make_generator, one_hot, sub_seed


class EventTrainAugment:
    """Event-frame augmentation (CIFAR10-DVS / DVS128 Gesture references).

    On `(frames [B, T, H, W, P] float counts, labels [B])`: horizontal flip
    (p 0.5), then per sample one op of the reference's `SNNAugmentWide`
    applied to all T frames alike: identity, shear-x (+-0.3 rad in 31 bins),
    translate-x/y (+-5 pixels), rotate (+-30 degrees), or cutout (a zero square
    of 0.1-11% of the area); nearest-neighbour resampling with zero fill keeps
    counts integral and non-negative. Then MixUp (`mixup_alpha`, applied to
    a batch with probability `mixup_prob`). Labels come out one-hot.

    Counts are preserved up to what leaves the frame (borders after
    translation/rotation/shear) or is cut out, plus nearest-neighbour
    duplication at rotations; see the test for the tolerance.
    """

    _NUM_OPS = 6  # identity, shear_x, translate_x, translate_y, rotate, cutout

    def __init__(self, recipe, num_classes, seed=None):
        aug = dict(recipe.augment or {})
        self.num_classes = int(num_classes)
        self.rng = make_generator(seed)
        self.flip = bool(aug.get("horizontal_flip", False))
        self.frame_augment = bool(aug.get("event_frame_augment", False))
        self.mixup_alpha = float(aug.get("mixup_alpha", 0.0) or 0.0)
        self.mixup_prob = float(aug.get("mixup_prob", 1.0))
        self.mixup_off_epoch = aug.get("mixup_off_epoch")
        self.mixup = (
            keras.layers.MixUp(alpha=self.mixup_alpha, seed=sub_seed(seed, 21))
            if self.mixup_alpha > 0
            else None
        )
        self.mixup_enabled = tf.Variable(
            self.mixup is not None, trainable=False, name="event_mixup_enabled"
        )

    def set_mixup_enabled(self, enabled):
        """Turns MixUp on or off for the following batches."""
        self.mixup_enabled.assign(bool(enabled))

    def _bins(self, low, high, batch):
        index = self.rng.uniform([batch], 0, 31, dtype=tf.int32)
        value = low + (high - low) * tf.cast(index, tf.float32) / 30.0
        return tf.where(self.rng.uniform([batch]) < 0.5, -value, value)

    def _frame_ops(self, x):
        """x: [B, H, W, C] (time and polarity folded into channels)."""
        batch = tf.shape(x)[0]
        height, width = x.shape[1], x.shape[2]
        cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
        op = self.rng.uniform([batch], 0, self._NUM_OPS, dtype=tf.int32)
        shear = tf.tan(self._bins(-0.3, 0.3, batch))
        shift = tf.cast(tf.cast(self._bins(-5.0, 5.0, batch), tf.int32), tf.float32)
        angle = self._bins(-30.0, 30.0, batch) * (math.pi / 180.0)
        zero, one = tf.zeros([batch]), tf.ones([batch])
        # Output -> input pixel maps [a0 a1 a2 b0 b1 b2 0 0] per op.
        identity = tf.stack([one, zero, zero, zero, one, zero], axis=1)
        shear_x = tf.stack([one, shear, -shear * cy, zero, one, zero], axis=1)
        trans_x = tf.stack([one, zero, -shift, zero, one, zero], axis=1)
        trans_y = tf.stack([one, zero, zero, zero, one, -shift], axis=1)
        cos, sin = tf.cos(angle), tf.sin(angle)
        rotate = tf.stack(
            [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy],
            axis=1,
        )
        table = tf.stack([identity, shear_x, trans_x, trans_y, rotate, identity], 1)
        params = tf.gather(table, op, batch_dims=1)
        params = tf.concat([params, tf.zeros([batch, 2])], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=params,
            output_shape=tf.constant([height, width], tf.int32),
            fill_value=0.0,
            interpolation="NEAREST",
            fill_mode="CONSTANT",
        )
        # Cutout: torchvision RandomErasing(p=1, scale=(0.001, 0.11), ratio=1).
        area = self.rng.uniform([batch], 0.001, 0.11) * float(height * width)
        side = tf.minimum(tf.round(tf.sqrt(area)), float(min(height, width)))
        y0 = tf.floor(self.rng.uniform([batch]) * (height - side + 1))
        x0 = tf.floor(self.rng.uniform([batch]) * (width - side + 1))
        rows = tf.range(height, dtype=tf.float32)[None, :, None]
        cols = tf.range(width, dtype=tf.float32)[None, None, :]
        inside = (
            (rows >= y0[:, None, None])
            & (rows < (y0 + side)[:, None, None])
            & (cols >= x0[:, None, None])
            & (cols < (x0 + side)[:, None, None])
        )
        cut = inside & (op == self._NUM_OPS - 1)[:, None, None]
        return tf.where(cut[..., None], 0.0, x)

    def __call__(self, frames, labels):
        frames = tf.cast(tf.convert_to_tensor(frames), tf.float32)
        if frames.shape.rank != 5:
            raise ValueError(
                "Expected event frames [batch, time, height, width, polarity], "
                f"got shape {frames.shape}. Batch the dataset before mapping."
            )
        labels = one_hot(labels, self.num_classes)
        steps, height, width, pol = frames.shape[1:]
        batch = tf.shape(frames)[0]
        x = tf.transpose(frames, [0, 2, 3, 1, 4])
        x = tf.reshape(x, [batch, height, width, steps * pol])
        if self.flip:
            flip = self.rng.uniform([batch]) < 0.5
            x = tf.where(flip[:, None, None, None], tf.reverse(x, [2]), x)
        if self.frame_augment:
            x = self._frame_ops(x)
        if self.mixup is not None:
            out = self.mixup({"images": x, "labels": labels})
            apply = tf.logical_and(
                self.mixup_enabled.read_value(), self.rng.uniform([]) < self.mixup_prob
            )
            x = tf.where(apply, out["images"], x)
            labels = tf.where(apply, out["labels"], labels)
        x = tf.reshape(x, [batch, height, width, steps, pol])
        frames = tf.transpose(x, [0, 3, 1, 2, 4])
        return tf.cast(frames, tf.float32), tf.cast(labels, tf.float32)


def make_event_train_augment(recipe, num_classes, seed=None):
    """Event-frame training augmentation of a DVS `recipe` (batched map).

    Args:
        recipe: `Recipe` (e.g. `Recipe.from_preset("spikformer_2_256_cifar10dvs")`).
        num_classes: int.
        seed: int or `None`.

    Returns:
        An `EventTrainAugment`: `(frames [B,T,H,W,P], labels [B]) ->
        (float32 frames, float32 one-hot labels)`.
    """
    return EventTrainAugment(recipe, num_classes, seed=seed)
