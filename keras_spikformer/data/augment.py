"""The reference's training augmentation and eval preprocessing, composed per recipe.

Order, as timm's `create_transform` + `Mixup` in the reference:

crop (CIFAR pad-and-crop / ImageNet random-resized-crop) -> horizontal flip
-> RandAugment -> normalise -> random erasing -> MixUp or CutMix (per batch).

Two ways to run it, same maths:

- streaming (`image_pipeline`, the trainer's path for TFDS and folders): the
  crop, flip and RandAugment run per example in `uint8` while decoding
  (`example_transform`, stateless draws from the example's seed, in the
  parallel map), the rest per batch (`batch_stage`);
- in-memory arrays: `augment(images, labels)` on batches does everything.

Batch shapes stay static (a `drop_remainder` batch keeps its size through
every stage), which keeps `BatchNorm` on its fast path inside `fit`.

The pieces live in `crops`, `rand_augment`, `erasing`, `mixing`,
`image_decode` and `event_augment` (re-exported here).

References:
    arXiv 2209.15425 (Spikformer); ZK-Zhou/spikformer configurations; timm.
"""

import keras
import tensorflow as tf

from keras_spikformer.data import crops
from keras_spikformer.data.augment_utils import (
    check_images,
    fill_colour,
    make_generator,
    normalizer,
    one_hot,
    sub_seed,
    to_size,
)
from keras_spikformer.data.erasing import make_random_erasing
from keras_spikformer.data.event_augment import (  # noqa: F401 (re-exports)
    EventTrainAugment,
    make_event_train_augment,
)
from keras_spikformer.data.image_decode import (
    EvalExampleTransform,
    TrainExampleTransform,
)
from keras_spikformer.data.mixing import MixUpCutMix
from keras_spikformer.data.rand_augment import RAND_AUGMENT_OPS, RandAugment  # noqa: F401


def _restore_shape(images, labels, image_shape, label_shape):
    images = tf.ensure_shape(tf.cast(images, tf.float32), image_shape)
    return images, tf.ensure_shape(tf.cast(labels, tf.float32), label_shape)


class TrainAugment:
    """Training augmentation built by `make_train_augment`.

    Call it as `dataset.map(augment)` on `(images [B,H,W,C] 0..255, labels
    [B])`; returns `(float32 normalised images, float32 one-hot labels)`.
    `example_transform` / `batch_stage` split the same work for the
    streaming pipeline. `mixup_enabled` is a `tf.Variable` read at every
    batch: set it with `set_mixup_enabled` or `MixupOffCallback`.
    """

    def __init__(self, recipe, image_size, num_classes, seed=None, channels=3):
        aug = dict(recipe.augment or {})
        ev = recipe.eval or {}
        self.image_size = to_size(image_size)
        self.num_classes = int(num_classes)
        self.rng = make_generator(seed)
        self.normalize = normalizer(recipe)
        self.padding = int(aug.get("random_crop_padding", 0) or 0)
        self.rrc_scale = aug.get("random_resized_crop_scale")
        self.rrc_ratio = tuple(aug.get("random_resized_crop_ratio", (3 / 4, 4 / 3)))
        self.interpolation = aug.get(
            "train_interpolation", ev.get("interpolation", "bicubic")
        )
        self.flip = (
            keras.layers.RandomFlip("horizontal", seed=sub_seed(seed, 11))
            if aug.get("horizontal_flip", False)
            else None
        )
        self.example_geometry = TrainExampleTransform(
            self.image_size,
            channels,
            padding=self.padding,
            scale=self.rrc_scale,
            ratio=self.rrc_ratio,
            interpolation=self.interpolation,
            flip=self.flip is not None,
            crop_pct=float(ev.get("crop_ratio", 1.0)),
        )
        ra = aug.get("rand_augment")
        self.rand_augment = None
        if ra:
            self.rand_augment = RandAugment(
                magnitude=ra.get("magnitude", 9),
                num_ops=ra.get("num_ops", 2),
                magnitude_std=ra.get("magnitude_std", 0.0),
                ops=ra.get("ops", "timm"),
                prob=ra.get("prob", 0.5),
                seed=sub_seed(seed, 12),
                fill=fill_colour(recipe),
            )
        self.erasing = make_random_erasing(
            aug.get("random_erasing", 0.0),
            aug.get("random_erasing_mode", "const"),
            seed,
        )
        self.mixing = MixUpCutMix(
            aug.get("mixup_alpha", 0.0),
            aug.get("cutmix_alpha", 0.0),
            prob=aug.get("mixup_prob", 1.0),
            switch_prob=aug.get("mixup_switch_prob", 0.5),
            seed=seed,
        )
        self.mixup_enabled = self.mixing.enabled
        self.mixup_off_epoch = aug.get("mixup_off_epoch")
        self._fused_batch_stage = tf.function(self._batch_stage_body, jit_compile=True)

    def set_mixup_enabled(self, enabled):
        """Turns MixUp/CutMix on or off for the following batches."""
        self.mixup_enabled.assign(bool(enabled))

    def geometry(self, images):
        """Crop/resize to `image_size` and flip a float batch (0..255 in and out)."""
        if self.padding:
            images = crops.pad_random_crop_batch(
                images, self.image_size, self.padding, self.rng
            )
        elif self.rrc_scale is not None:
            images = crops.random_resized_crop_batch(
                images,
                self.image_size,
                tuple(self.rrc_scale),
                self.rrc_ratio,
                self.rng,
                self.interpolation,
            )
        elif tuple(images.shape[1:3]) != self.image_size:
            images = crops.resize(images, self.image_size, self.interpolation)
        if self.flip is not None:
            images = self.flip(images)
        return images

    def example_transform(self, contents, label, seed):
        """Decode, crop, flip and RandAugment one encoded image (`uint8` out)."""
        image, label = self.example_geometry(contents, label, seed)
        if self.rand_augment is not None:
            seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 12)
            image = self.rand_augment.augment_image(image, seed)
        return image, label

    def batch_stage(self, images, labels):
        """Normalise, erase, mix: a batch already at `image_size`, RandAugmented.

        The element-wise work runs as one XLA-compiled function (fused into
        a few passes over the batch, ~3x less CPU than op by op); MixUp's
        Beta draw, which XLA lacks, is made before it.
        """
        labels = one_hot(labels, self.num_classes)
        images = check_images(images)
        mix = None
        if self.mixing.active:
            mix = self.mixing.draw(images.shape[1], images.shape[2])
        return self._fused_batch_stage(images, labels, mix)

    def _batch_stage_body(self, images, labels, mix):
        image_shape = [*images.shape[:3], images.shape[-1]]
        label_shape = labels.shape
        images = self.normalize(images)
        if self.erasing is not None:
            images = self.erasing(images)
        if mix is not None:
            images, labels = self.mixing.apply(images, labels, mix)
        return _restore_shape(images, labels, image_shape, label_shape)

    def __call__(self, images, labels):
        images = check_images(images)
        batch = images.shape[0]
        shape = [batch, *self.image_size, images.shape[-1]]
        images = tf.ensure_shape(self.geometry(images), shape)
        if self.rand_augment is not None:
            images = tf.ensure_shape(self.rand_augment(images), shape)
        return self.batch_stage(images, labels)


class EvalPreprocess:
    """Eval preprocessing built by `make_eval_preprocess`.

    `example_transform`: timm's eval geometry per encoded example (resize the
    shorter side to `size / crop_ratio`, centre crop). `batch_stage`:
    normalise and one-hot. Called on an array batch of another size, it
    resizes (centre square crop, then resize) first.
    """

    def __init__(self, recipe, image_size, num_classes, channels=3):
        self.image_size = to_size(image_size)
        self.num_classes = int(num_classes)
        ev = recipe.eval or {}
        self.crop_ratio = float(ev.get("crop_ratio", 1.0))
        self.interpolation = ev.get("interpolation", "bicubic")
        self.example_transform = EvalExampleTransform(
            self.image_size, channels, self.crop_ratio, self.interpolation
        )
        self.normalize = normalizer(recipe)

    def batch_stage(self, images, labels):
        """Normalise and one-hot a batch at `image_size`."""
        images = check_images(images)
        labels = one_hot(labels, self.num_classes)
        images = self.normalize(images)
        return _restore_shape(images, labels, images.shape, labels.shape)

    def __call__(self, images, labels):
        images = check_images(images)
        if tuple(images.shape[1:3]) != self.image_size:
            scaled = tuple(int(s // self.crop_ratio) for s in self.image_size)
            images = keras.layers.Resizing(
                *scaled,
                interpolation=self.interpolation,
                crop_to_aspect_ratio=True,
                antialias=True,
            )(images)
            if scaled != self.image_size:
                images = keras.layers.CenterCrop(*self.image_size)(images)
        return self.batch_stage(images, labels)


def make_train_augment(recipe, image_size, num_classes, seed=None, channels=3):
    """Training augmentation of `recipe`.

    Args:
        recipe: `keras_spikformer.training.Recipe`.
        image_size: int or (height, width), the model's input size.
        num_classes: int.
        seed: int or `None`.
        channels: int, channels of the model's images (decoding). Defaults
            to `3`.

    Returns:
        A `TrainAugment` (callable `(images, labels) -> (images, one_hot)`).

    Example:
    ```python
    augment = make_train_augment(recipe, 32, 10, seed=0)
    ds = ds.batch(128, drop_remainder=True).map(augment).prefetch(2)
    model.fit(ds, callbacks=[MixupOffCallback(augment)])
    ```
    """
    return TrainAugment(recipe, image_size, num_classes, seed=seed, channels=channels)


def make_eval_preprocess(recipe, image_size, num_classes, channels=3):
    """Deterministic eval preprocessing of `recipe` (timm's eval transform).

    Args:
        recipe: `Recipe`.
        image_size: int or (height, width).
        num_classes: int.
        channels: int. Defaults to `3`.

    Returns:
        An `EvalPreprocess`, callable `(images, labels) -> (normalised images,
        one-hot labels)` on batches.

    Example:
    >>> preprocess = make_eval_preprocess(recipe, 224, 1000)  # doctest: +SKIP
    """
    return EvalPreprocess(recipe, image_size, num_classes, channels=channels)
