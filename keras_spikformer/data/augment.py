"""The reference's data augmentation, as `tf.data` map functions.

Everything here runs inside `dataset.map(...)` on batched data, whatever the
Keras backend: Keras core preprocessing layers (they switch to TensorFlow ops
inside `tf.data`) plus a few plain TensorFlow ops. Order, as timm's
`create_transform` + `Mixup` in the reference:

crop (CIFAR pad-and-crop / ImageNet random-resized-crop) -> horizontal flip
-> RandAugment -> normalise -> random erasing -> MixUp or CutMix (per batch).

RandAugment magnitudes. timm's magnitude `m` (0..10, here 9) sets each op's
strength through its own formula; `keras.layers.RandAugment` instead shares
one `factor` between all its ops, with different meanings per op (a rotation
`factor` is a fraction of 360 degrees, a translation one a fraction of the
image, posterisation keeps `int(8 * factor)` bits), picks the same ops for a
whole batch, and applies them always. No single `factor` reproduces m9
(rotation needs 0.075, shear 0.27, translation 0.405, solarize threshold
0.1), so `RandAugment` below keeps timm's op list and per-op formulas and
builds each op from the matching Keras layer (`RandomRotation`,
`RandomShear`, `RandomTranslation`, `AutoContrast`, `RandomPosterization`)
or a few TensorFlow ops (PIL's enhance blends, solarize, equalize); ops are
chosen per image and each applied with probability 0.5, as timm does. The
magnitude noise (`mstd`) is approximated by a uniform draw in
`[m - mstd, m + mstd]` for the Keras geometric layers (timm: Gaussian).

References:
    arXiv 2209.15425 (Spikformer); ZK-Zhou/spikformer configurations.
"""

import math

import keras
import numpy as np
import tensorflow as tf

# Op sets. "timm": timm's `_RAND_INCREASING_TRANSFORMS` (`rand-...-inc1`, the
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


def _generator(seed):
    if seed is None:
        return tf.random.Generator.from_non_deterministic_state()
    return tf.random.Generator.from_seed(int(seed))


def _sub_seed(seed, i):
    return None if seed is None else int(seed) * 1000 + i


def _one_hot(labels, num_classes):
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 2 and labels.shape[-1] == num_classes:
        return tf.cast(labels, tf.float32)
    labels = tf.reshape(labels, [-1])
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)


def _normalizer(recipe):
    norm = recipe.normalize or {}
    mean = np.asarray(norm.get("mean", (0.0, 0.0, 0.0)), "float32") * 255.0
    std = np.asarray(norm.get("std", (1.0, 1.0, 1.0)), "float32") * 255.0
    if not norm:
        std = np.full_like(std, 255.0)

    def normalize(images):
        return (images - mean) / std

    return normalize


def _check_images(images):
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(
            "Expected a batch of images [batch, height, width, channels], got "
            f"shape {images.shape}. Batch the dataset before mapping the "
            "augmentation: `ds.batch(b).map(augment)`."
        )
    return tf.cast(images, tf.float32)


def _resize(images, size, interpolation="bicubic"):
    images = tf.image.resize(images, size, method=interpolation, antialias=True)
    return tf.clip_by_value(images, 0.0, 255.0)


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
        self.rng = _generator(seed)
        lo = max(0.0, self.magnitude - self.magnitude_std) / 10.0
        hi = min(10.0, self.magnitude + self.magnitude_std) / 10.0
        geo = dict(fill_mode="constant", fill_value=_FILL, interpolation="bilinear")
        self._layers = {
            # Fractions of 360 degrees; sign from mirroring (see _apply_op).
            "rotate": keras.layers.RandomRotation(
                (lo * 30 / 360, hi * 30 / 360), seed=_sub_seed(seed, 1), **geo
            ),
            # RandomShear draws its own sign.
            "shear_x": keras.layers.RandomShear(
                x_factor=(lo * 0.3, hi * 0.3),
                y_factor=0.0,
                seed=_sub_seed(seed, 2),
                **geo,
            ),
            "shear_y": keras.layers.RandomShear(
                x_factor=0.0,
                y_factor=(lo * 0.3, hi * 0.3),
                seed=_sub_seed(seed, 3),
                **geo,
            ),
            "translate_x": keras.layers.RandomTranslation(
                0.0, (lo * 0.45, hi * 0.45), seed=_sub_seed(seed, 4), **geo
            ),
            "translate_y": keras.layers.RandomTranslation(
                (lo * 0.45, hi * 0.45), 0.0, seed=_sub_seed(seed, 5), **geo
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
            # Each op sees its images plus one spare (dropped after), so that
            # no Keras layer is called on an empty batch.
            outs = [
                self._apply_op(name, tf.concat([images[:1], part], 0))[1:]
                for name, part in zip(self.ops, parts[:num], strict=True)
            ]
            outs.append(parts[num])
            images = tf.dynamic_stitch(where, outs)
            images = tf.clip_by_value(images, 0.0, 255.0)
        return images


def _pad_random_crop(images, size, padding, rng):
    """torchvision's RandomCrop(size, padding): zero pad, per-image crop."""
    images = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    oy = rng.uniform([batch], 0, height - size[0] + 1, dtype=tf.int32)
    ox = rng.uniform([batch], 0, width - size[1] + 1, dtype=tf.int32)
    rows = oy[:, None] + tf.range(size[0])[None]
    cols = ox[:, None] + tf.range(size[1])[None]
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def _random_resized_crop(images, size, scale, ratio, rng, interpolation, attempts=10):
    """timm's RandomResizedCropAndInterpolation on a batch (per-image boxes).

    With `scale=(1, 1)` (the reference) no attempt fits inside a square
    image, so timm's fallback takes the whole image (aspect within `ratio`),
    i.e. a plain resize; other images get the fallback's centre crop.
    """
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    area = height * width
    target = area * rng.uniform([batch, attempts], scale[0], scale[1] + 1e-12)
    log_r = rng.uniform([batch, attempts], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_r)
    w = tf.round(tf.sqrt(target * aspect))
    h = tf.round(tf.sqrt(target / aspect))
    ok = (w <= width) & (h <= height) & (w > 0) & (h > 0)
    first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
    any_ok = tf.reduce_any(ok, axis=1)
    w = tf.gather(w, first, batch_dims=1)
    h = tf.gather(h, first, batch_dims=1)
    in_ratio = width / height
    fb_w = tf.where(
        in_ratio < ratio[0],
        width,
        tf.where(in_ratio > ratio[1], tf.round(height * ratio[1]), width),
    )
    fb_h = tf.where(
        in_ratio < ratio[0],
        tf.round(width / ratio[0]),
        height,
    )
    w = tf.where(any_ok, w, fb_w)
    h = tf.where(any_ok, h, fb_h)
    y0 = tf.where(
        any_ok,
        tf.floor(rng.uniform([batch]) * (height - h + 1)),
        tf.floor((height - h) / 2),
    )
    x0 = tf.where(
        any_ok,
        tf.floor(rng.uniform([batch]) * (width - w + 1)),
        tf.floor((width - w) / 2),
    )
    boxes = tf.cast(tf.stack([y0, x0, h, w], axis=1), tf.int32)

    def crop_one(args):
        image, box = args
        crop = tf.slice(image, [box[0], box[1], 0], [box[2], box[3], -1])
        return tf.image.resize(crop, size, method=interpolation, antialias=True)

    out = tf.map_fn(
        crop_one, (images, boxes), fn_output_signature=tf.TensorSpec(None, tf.float32)
    )
    out = tf.ensure_shape(out, [None, size[0], size[1], images.shape[-1]])
    return tf.clip_by_value(out, 0.0, 255.0)


class TrainAugment:
    """Batched training augmentation built by `make_train_augment`.

    Call it as `dataset.map(augment)` on `(images [B,H,W,C] 0..255, labels
    [B])`; returns `(float32 normalised images, float32 one-hot labels)`.
    `mixup_enabled` is a `tf.Variable` read at every batch: set it with
    `set_mixup_enabled` or `keras_spikformer.training.callbacks.MixupOffCallback`.
    """

    def __init__(self, recipe, image_size, num_classes, seed=None):
        aug = dict(recipe.augment or {})
        self.image_size = tuple(
            (image_size, image_size) if isinstance(image_size, int) else image_size
        )
        self.num_classes = int(num_classes)
        self.rng = _generator(seed)
        self.normalize = _normalizer(recipe)
        self.padding = int(aug.get("random_crop_padding", 0) or 0)
        self.rrc_scale = aug.get("random_resized_crop_scale")
        self.rrc_ratio = tuple(aug.get("random_resized_crop_ratio", (3 / 4, 4 / 3)))
        self.interpolation = (recipe.eval or {}).get("interpolation", "bicubic")
        self.flip = (
            keras.layers.RandomFlip("horizontal", seed=_sub_seed(seed, 11))
            if aug.get("horizontal_flip", False)
            else None
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
                seed=_sub_seed(seed, 12),
            )
        self.erasing = None
        erase_prob = float(aug.get("random_erasing", 0.0) or 0.0)
        if erase_prob > 0:
            mode = aug.get("random_erasing_mode", "const")
            if mode not in ("const", "pixel"):
                raise ValueError(
                    f"random_erasing_mode {mode!r} is not supported; use 'const' "
                    "(zeros after normalisation, the reference) or 'pixel'."
                )
            self.erasing = keras.layers.RandomErasing(
                factor=(erase_prob, erase_prob),
                scale=(0.02, 1 / 3),
                # 'pixel': N(0, 1) noise, which Keras clips to value_range.
                fill_value=0.0 if mode == "const" else None,
                value_range=(-1.0, 1.0),
                seed=_sub_seed(seed, 13),
            )
        self.mixup_alpha = float(aug.get("mixup_alpha", 0.0) or 0.0)
        self.cutmix_alpha = float(aug.get("cutmix_alpha", 0.0) or 0.0)
        self.mixup_prob = float(aug.get("mixup_prob", 1.0))
        self.switch_prob = float(aug.get("mixup_switch_prob", 0.5))
        self.mixup_off_epoch = aug.get("mixup_off_epoch")
        if self.cutmix_alpha > 1.0:
            raise ValueError(
                f"cutmix_alpha {self.cutmix_alpha} > 1 is not supported by "
                "keras.layers.CutMix (its factor is bounded by 1)."
            )
        self.mixup = (
            keras.layers.MixUp(alpha=self.mixup_alpha, seed=_sub_seed(seed, 14))
            if self.mixup_alpha > 0
            else None
        )
        self.cutmix = (
            keras.layers.CutMix(
                factor=(self.cutmix_alpha, self.cutmix_alpha), seed=_sub_seed(seed, 15)
            )
            if self.cutmix_alpha > 0
            else None
        )
        self.mixup_enabled = tf.Variable(
            self.mixup is not None or self.cutmix is not None,
            trainable=False,
            name="mixup_enabled",
        )

    def set_mixup_enabled(self, enabled):
        """Turns MixUp/CutMix on or off for the following batches."""
        self.mixup_enabled.assign(bool(enabled))

    def geometry(self, images):
        """Crop/resize to `image_size` and flip (0..255 in and out)."""
        if self.padding:
            images = _pad_random_crop(images, self.image_size, self.padding, self.rng)
        elif self.rrc_scale is not None:
            images = _random_resized_crop(
                images,
                self.image_size,
                tuple(self.rrc_scale),
                self.rrc_ratio,
                self.rng,
                self.interpolation,
            )
        elif tuple(images.shape[1:3]) != self.image_size:
            images = _resize(images, self.image_size, self.interpolation)
        if self.flip is not None:
            images = self.flip(images)
        return images

    def _mix(self, images, labels):
        batch = tf.shape(images)[0]
        outs = []
        if self.mixup is not None:
            out = self.mixup({"images": images, "labels": labels})
            outs.append((out["images"], out["labels"]))
        if self.cutmix is not None:
            out = self.cutmix({"images": images, "labels": labels})
            outs.append((out["images"], out["labels"]))
        if len(outs) == 2:  # timm's switch: CutMix with probability switch_prob
            use_cutmix = self.rng.uniform([]) < self.switch_prob
            mixed = [tf.where(use_cutmix, c, m) for m, c in zip(*outs, strict=True)]
        else:
            mixed = outs[0]
        apply = tf.logical_and(
            self.mixup_enabled.read_value(), self.rng.uniform([]) < self.mixup_prob
        )
        del batch
        return tf.where(apply, mixed[0], images), tf.where(apply, mixed[1], labels)

    def __call__(self, images, labels):
        images = _check_images(images)
        labels = _one_hot(labels, self.num_classes)
        images = self.geometry(images)
        if self.rand_augment is not None:
            images = self.rand_augment(images)
        images = self.normalize(tf.clip_by_value(images, 0.0, 255.0))
        if self.erasing is not None:
            images = self.erasing(images)
        if self.mixup is not None or self.cutmix is not None:
            images, labels = self._mix(images, labels)
        return tf.cast(images, tf.float32), tf.cast(labels, tf.float32)


def make_train_augment(recipe, image_size, num_classes, seed=None):
    """Training augmentation of `recipe` for `dataset.map` on batches.

    Args:
        recipe: `keras_spikformer.training.Recipe`.
        image_size: int or (height, width), the model's input size.
        num_classes: int.
        seed: int or `None`.

    Returns:
        A `TrainAugment` (callable `(images, labels) -> (images, one_hot)`).

    Example:
    ```python
    augment = make_train_augment(recipe, 32, 10, seed=0)
    ds = ds.batch(128, drop_remainder=True).map(augment).prefetch(2)
    model.fit(ds, callbacks=[MixupOffCallback(augment)])
    ```
    """
    return TrainAugment(recipe, image_size, num_classes, seed=seed)


def make_eval_preprocess(recipe, image_size, num_classes):
    """Deterministic eval preprocessing for `dataset.map` on batches.

    timm's eval transform: resize the shorter side to `image_size /
    crop_ratio` (bicubic), centre-crop `image_size`, normalise. Implemented
    with `keras.layers.Resizing(crop_to_aspect_ratio=True)` (centre square
    crop, then resize: the same thing) and `keras.layers.CenterCrop`.

    Args:
        recipe: `Recipe`.
        image_size: int or (height, width).
        num_classes: int.

    Returns:
        A function `(images, labels) -> (normalised images, one-hot labels)`.
    """
    size = (
        (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    )
    ev = recipe.eval or {}
    crop_ratio = float(ev.get("crop_ratio", 1.0))
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"eval crop_ratio must be in (0, 1], got {crop_ratio}.")
    interpolation = ev.get("interpolation", "bicubic")
    scaled = tuple(int(math.floor(s / crop_ratio)) for s in size)
    resize = keras.layers.Resizing(
        *scaled, interpolation=interpolation, crop_to_aspect_ratio=True, antialias=True
    )
    crop = keras.layers.CenterCrop(*size) if scaled != size else None
    normalize = _normalizer(recipe)

    def preprocess(images, labels):
        images = _check_images(images)
        if tuple(images.shape[1:3]) != size or crop is not None:
            images = resize(images)
            if crop is not None:
                images = crop(images)
        images = normalize(tf.clip_by_value(images, 0.0, 255.0))
        return tf.cast(images, tf.float32), _one_hot(labels, num_classes)

    return preprocess


# ------------------------------------------------------------- event frames
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
        self.rng = _generator(seed)
        self.flip = bool(aug.get("horizontal_flip", False))
        self.frame_augment = bool(aug.get("event_frame_augment", False))
        self.mixup_alpha = float(aug.get("mixup_alpha", 0.0) or 0.0)
        self.mixup_prob = float(aug.get("mixup_prob", 1.0))
        self.mixup_off_epoch = aug.get("mixup_off_epoch")
        self.mixup = (
            keras.layers.MixUp(alpha=self.mixup_alpha, seed=_sub_seed(seed, 21))
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
        labels = _one_hot(labels, self.num_classes)
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
