"""`ImageClassifierPreprocessor`: raw images of any size in, model inputs out."""

import math

import keras
import numpy as np

from keras_spikformer.models.image_inputs import (
    DTYPE_TO_8BIT,
    check_pixel_dtype,
    check_raw_images,
    dtype_name,
)

# Bounds checked at construction, before anything is allocated: a tiny
# `crop_pct` would resize every image to a huge one first.
MIN_CROP_PCT = 0.25
MAX_RESIZE_SIDE = 4096
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos3", "lanczos5", "area")


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ImageClassifierPreprocessor(keras.layers.Pipeline):
    """Resize, centre crop, rescale and normalise, as the reference evaluates.

    Images of any size are resized so that the centre crop of
    `crop_pct` of their shorter side becomes `image_size` (timm's evaluation
    transform: resize the shorter side to `size / crop_pct`, then centre
    crop), then rescaled by `scale` and normalised with `mean`/`std`. Event
    frames (`encoding="frames"`) pass through: they are integrated at the
    sensor's resolution by the data pipeline.

    Built from Keras core preprocessing layers, so it also runs inside a
    `tf.data` pipeline on every backend. A task (`Spikformer`, ...) applies
    its preprocessor in `fit`, `evaluate` and `predict`.

    Args:
        image_size: tuple `(height, width)` of the model input.
        crop_pct: float in [0.25, 1], the fraction of the shorter side kept by
            the centre crop. Defaults to `1.0`.
        interpolation: str, resize interpolation. Defaults to `"bicubic"`.
        mean: per-channel means after rescaling, or `None` (no normalisation).
        std: per-channel standard deviations, or `None`.
        scale: float, multiplies the pixels first (`1/255` for 0..255 pixels:
            uint8 or float images; uint16 images are scaled to 0..255 first).
        encoding: `"direct"` (images) or `"frames"` (event frames, passed through).
        **kwargs: `name`.

    Example:
    >>> pre = ImageClassifierPreprocessor((224, 224), crop_pct=0.875,
    ...     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    >>> x = pre(np.zeros((2, 375, 500, 3), "uint8"))  # (2, 224, 224, 3)
    """

    backbone_cls = None

    def __init__(
        self,
        image_size=(224, 224),
        crop_pct=1.0,
        interpolation="bicubic",
        mean=None,
        std=None,
        scale=1.0 / 255.0,
        encoding="direct",
        **kwargs,
    ):
        image_size = _pair(image_size)
        crop_pct = _number("crop_pct", crop_pct)
        if not MIN_CROP_PCT <= crop_pct <= 1.0:
            effect = ""
            if 0 < crop_pct < MIN_CROP_PCT:
                target = _resize_target(image_size, crop_pct)
                effect = f", which would resize every image to {target} first"
            raise ValueError(
                f"`crop_pct` must be in [{MIN_CROP_PCT}, 1] (the fraction of the "
                f"shorter side kept by the centre crop; presets use 0.875-1.0); got "
                f"{crop_pct}{effect}. Fix `crop_pct` in preprocessor.json (or the "
                "recipe's eval `crop_ratio`)."
            )
        if max(_resize_target(image_size, crop_pct)) > MAX_RESIZE_SIDE:
            raise ValueError(
                f"`image_size` {image_size} with `crop_pct` {crop_pct} resizes every "
                f"image to {_resize_target(image_size, crop_pct)}, above "
                f"{MAX_RESIZE_SIDE} pixels a side; use a smaller image_size."
            )
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}; got {interpolation!r}."
            )
        if (mean is None) != (std is None):
            raise ValueError("Give both `mean` and `std`, or neither.")
        if mean is not None:
            mean = _numbers("mean", mean)
            std = _numbers("std", std)
            if len(mean) != len(std):
                raise ValueError(
                    f"`mean` and `std` need one value per channel each; got {mean} "
                    f"and {std}."
                )
            if min(std) <= 0:
                raise ValueError(f"`std` must be positive; got {std}.")
        scale = _number("scale", scale)
        if scale <= 0:
            raise ValueError(
                f"`scale` must be positive (1/255 for 0..255 pixels); got {scale}."
            )
        if encoding not in ("direct", "frames"):
            raise ValueError(
                f"`encoding` must be 'direct' or 'frames'; got {encoding!r}."
            )
        self.image_size = image_size
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.mean = mean
        self.std = std
        self.scale = scale
        self.encoding = encoding
        super().__init__(self._make_layers(), name=kwargs.pop("name", None))
        self._to_8bit = {
            dtype: keras.layers.Rescaling(factor, name=f"{dtype}_to_8bit")
            for dtype, factor in DTYPE_TO_8BIT.items()
        }
        for layer in [*self.layers, *self._to_8bit.values()]:  # stateless
            layer.built = True
        self.built = True

    def call(self, inputs, training=None, mask=None):
        if not self.layers:  # event frames pass through
            return inputs
        dtype = dtype_name(inputs.dtype)
        check_pixel_dtype(dtype)
        if dtype in DTYPE_TO_8BIT:  # e.g. uint16 pixels to the 0..255 of uint8
            inputs = self._to_8bit[dtype](inputs)
        return super().call(inputs, training=False, mask=mask)

    def _make_layers(self):
        if self.encoding == "frames":
            return []
        height, width = self.image_size
        resize_to = _resize_target(self.image_size, self.crop_pct)
        layers = [
            keras.layers.Resizing(
                *resize_to,
                interpolation=self.interpolation,
                crop_to_aspect_ratio=True,
                antialias=self.interpolation != "nearest",
            )
        ]
        if resize_to != (height, width):
            layers.append(keras.layers.CenterCrop(height, width))
        mean = np.zeros(1) if self.mean is None else np.asarray(self.mean)
        std = np.ones(1) if self.std is None else np.asarray(self.std)
        layers.append(
            keras.layers.Rescaling(
                scale=(self.scale / std).tolist(), offset=(-mean / std).tolist()
            )
        )
        return layers

    @property
    def num_channels(self):
        """Channels the normalisation expects, or `None` when it broadcasts."""
        return None if self.mean is None or len(self.mean) == 1 else len(self.mean)

    def check_images(self, images, channels):
        """Raises a `ValueError` naming the fix when `images` cannot be preprocessed
        (see `image_inputs.check_raw_images`); warns on 0..1 float images."""
        check_raw_images(images, channels, self.encoding, self.scale)

    def get_config(self):
        return {
            "name": self.name,
            "image_size": list(self.image_size),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
            "scale": self.scale,
            "encoding": self.encoding,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_recipe(cls, recipe, image_shape, encoding="direct"):
        """The evaluation preprocessing of a preset's `recipe.json` (a dict).

        Example:
        >>> pre = ImageClassifierPreprocessor.from_recipe(recipe, (224, 224, 3))
        """
        normalize = recipe.get("normalize") or {}
        evaluation = recipe.get("eval") or {}
        return cls(
            image_size=tuple(image_shape[:2]),
            crop_pct=evaluation.get("crop_ratio", 1.0),
            interpolation=evaluation.get("interpolation", "bicubic"),
            mean=normalize.get("mean"),
            std=normalize.get("std"),
            scale=recipe.get("input_scale", 1.0 / 255.0),
            encoding=encoding,
        )


def _resize_target(image_size, crop_pct):
    """The size every image is resized to before the centre crop."""
    return tuple(math.floor(side / crop_pct) for side in image_size)


def _number(name, value):
    """`value` as a finite float, or a `ValueError` naming the option."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(
            f"`{name}` must be a finite number; got {value!r}. Fix it in "
            "preprocessor.json (or the preset's recipe.json)."
        )
    return number


def _numbers(name, values):
    """A list of finite floats (one per channel)."""
    if isinstance(values, (int, float)):
        values = [values]
    if isinstance(values, str) or not hasattr(values, "__len__") or not len(values):
        raise ValueError(
            f"`{name}` must be a list of per-channel numbers; got {values!r}."
        )
    return [_number(name, v) for v in values]


def _pair(size):
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`image_size` must be (height, width); got {size}.")
    return size
