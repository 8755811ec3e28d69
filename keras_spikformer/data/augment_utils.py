"""Small helpers shared by the augmentation modules: random generators, labels, checks."""

import numpy as np
import tensorflow as tf


def make_generator(seed):
    """A `tf.random.Generator` from `seed`, or a non-deterministic one for `None`."""
    if seed is None:
        return tf.random.Generator.from_non_deterministic_state()
    return tf.random.Generator.from_seed(int(seed))


def sub_seed(seed, i):
    """The seed of the `i`-th random component built from `seed` (`None` stays `None`)."""
    return None if seed is None else int(seed) * 1000 + i


def one_hot(labels, num_classes):
    """float32 one-hot labels `[batch, num_classes]` (one-hot input passes through)."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[-1] == num_classes:
        return tf.cast(labels, tf.float32)
    batch = labels.shape[0] if labels.shape.rank == 1 else None
    labels = tf.reshape(labels, [-1])
    out = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    return tf.ensure_shape(out, [batch, num_classes])


def normalizer(recipe):
    """`images -> (images - mean) / std` on 0..255 pixels with the recipe's `normalize`.

    Without a `normalize` section, pixels are scaled to 0..1.
    """
    norm = recipe.normalize or {}
    mean = np.asarray(norm.get("mean", (0.0, 0.0, 0.0)), "float64") * 255.0
    std = np.asarray(norm.get("std", (1.0, 1.0, 1.0)), "float64") * 255.0
    if not norm:
        std = np.full_like(std, 255.0)
    scale = (1.0 / std).astype("float32")
    offset = (-mean / std).astype("float32")

    def normalize(images):
        # uint8 pixels are within 0..255 already; one multiply-add pass.
        if images.dtype != tf.uint8:
            images = tf.clip_by_value(images, 0.0, 255.0)
        return tf.cast(images, tf.float32) * scale + offset

    return normalize


def fill_colour(recipe):
    """timm's `img_mean` fill of RandAugment's geometric ops: `round(255 * mean)`."""
    mean = (recipe.normalize or {}).get("mean", (0.5, 0.5, 0.5))
    return tuple(float(min(255, round(255 * m))) for m in mean)


def check_images(images):
    """A batch `[batch, height, width, channels]` (uint8 kept), or a clear error."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(
            "Expected a batch of images [batch, height, width, channels], got "
            f"shape {images.shape}. Batch the dataset before mapping the "
            "augmentation: `ds.batch(b).map(augment)`."
        )
    return images if images.dtype == tf.uint8 else tf.cast(images, tf.float32)


def to_size(image_size):
    """`(height, width)` from an int or a pair."""
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(int(s) for s in image_size)
