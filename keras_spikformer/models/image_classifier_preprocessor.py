"""`ImageClassifierPreprocessor`: raw images of any size in, model inputs out."""

import math

import keras
import numpy as np

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
        crop_pct: float in (0, 1], the fraction of the shorter side kept by
            the centre crop. Defaults to `1.0`.
        interpolation: str, resize interpolation. Defaults to `"bicubic"`.
        mean: per-channel means after rescaling, or `None` (no normalisation).
        std: per-channel standard deviations, or `None`.
        scale: float, multiplies the pixels first (`1/255` for uint8 images).
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
        if not 0.0 < float(crop_pct) <= 1.0:
            raise ValueError(f"`crop_pct` must be in (0, 1]; got {crop_pct}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}; got {interpolation!r}."
            )
        if (mean is None) != (std is None):
            raise ValueError("Give both `mean` and `std`, or neither.")
        if std is not None and any(float(s) <= 0 for s in std):
            raise ValueError(f"`std` must be positive; got {std}.")
        if encoding not in ("direct", "frames"):
            raise ValueError(f"`encoding` must be 'direct' or 'frames'; got {encoding!r}.")
        self.image_size = image_size
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation
        self.mean = None if mean is None else [float(m) for m in mean]
        self.std = None if std is None else [float(s) for s in std]
        self.scale = float(scale)
        self.encoding = encoding
        super().__init__(self._make_layers(), name=kwargs.pop("name", None))
        for layer in self.layers:  # stateless: nothing to build
            layer.built = True
        self.built = True

    def call(self, inputs, training=None, mask=None):
        if not self.layers:  # event frames pass through
            return inputs
        return super().call(inputs, training=False, mask=mask)

    def _make_layers(self):
        if self.encoding == "frames":
            return []
        height, width = self.image_size
        resize_to = (
            math.floor(height / self.crop_pct),
            math.floor(width / self.crop_pct),
        )
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
        """Raises a `ValueError` naming the fix when `images` cannot be preprocessed."""
        shape = tuple(getattr(images, "shape", np.shape(images)))
        rank = 5 if self.encoding == "frames" else 4
        if len(shape) not in (rank - 1, rank):
            layout = "[batch, time, height, width, channels]" if rank == 5 else (
                "[batch, height, width, channels] (or one [height, width, channels] image)"
            )
            raise ValueError(f"Expected images laid out {layout}; got shape {shape}.")
        if shape[-1] is not None and channels is not None and shape[-1] != channels:
            hint = ""
            if shape[-1] == 1 and channels == 3:
                hint = " Convert grey-scale images to RGB (repeat the channel)."
            elif len(shape) >= 3 and shape[-3] == channels:
                hint = " The images look channels-first: move channels last."
            raise ValueError(
                f"The model takes {channels}-channel images; got {shape[-1]} channels "
                f"(shape {shape}).{hint}"
            )

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


def _pair(size):
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`image_size` must be (height, width); got {size}.")
    return size
