"""Checks of the images a classifier is given, run eagerly before any heavy work.

Raw images (what `predict`, `evaluate` and `fit` preprocess) must be numeric
pixels laid out channels last, with at least one image of at least one pixel,
and finite. Float images are taken as 0..255 pixels (uint8 values), as the
preprocessor's `scale` (1/255) expects; uint16 images are scaled to that range
by the preprocessor (`DTYPE_TO_8BIT`). Model-ready inputs (preprocessing
disabled, or the preprocessor's output) are checked against the model's input
shape on every call: the traced predict function only checks when it traces.
"""

import warnings

import keras
import numpy as np

from keras_spikformer.models.backbone import check_input_shape

# Integer dtypes whose pixels are scaled to the 0..255 range of uint8 first.
DTYPE_TO_8BIT = {"uint16": 255.0 / 65535.0}


def dtype_name(dtype):
    """A dtype's name (`"uint8"`, `"string"`, `"bool"`, ...) for any backend."""
    if isinstance(dtype, np.dtype) and dtype.kind in "USO":
        return "string" if dtype.kind in "US" else "object"
    try:
        return keras.backend.standardize_dtype(dtype)
    except (ValueError, TypeError, AttributeError):
        return str(dtype)


def check_pixel_dtype(dtype, what="The images"):
    """Raises a `ValueError` naming the fix when `dtype` is not a pixel type.

    Args:
        dtype: the images' dtype (NumPy, TensorFlow, JAX or torch).
        what: how the message names the images.

    Example:
    >>> check_pixel_dtype(np.dtype("uint8"))  # passes
    """
    name = dtype_name(dtype)
    if name in ("string", "object"):
        raise ValueError(
            f"{what} are {name}s (dtype {dtype}), not pixels: file names or encoded "
            "images must be loaded first, e.g. "
            "`np.stack([keras.utils.img_to_array(keras.utils.load_img(p)) for p in "
            "paths])` (or `keras.utils.image_dataset_from_directory`)."
        )
    if name == "bool":
        raise ValueError(
            f"{what} are bool (masks?), not pixels: give uint8 pixels 0..255, e.g. "
            "`images.astype('uint8') * 255`."
        )
    if name.startswith("complex"):
        raise ValueError(
            f"{what} are complex ({name}); give real pixels (uint8 or float)."
        )


def check_raw_images(images, channels, encoding="direct", scale=1.0 / 255.0):
    """Checks raw images (an array) before the preprocessor runs.

    Raises a `ValueError` naming the problem and the fix for non-pixel dtypes,
    a wrong layout (a grey `(N, H, W)` batch gets its own hint), an empty
    batch, images of zero height or width, a channel mismatch and NaN or
    infinite pixels; warns when float images look like 0..1 images while the
    preprocessor expects 0..255 (`scale` 1/255).

    Args:
        images: an array-like `[batch, H, W, C]`, one `[H, W, C]` image, or
            event frames `[batch, T, H, W, C]` (`encoding="frames"`).
        channels: the channels the model takes, or `None`.
        encoding: the preprocessor's encoding, `"direct"` or `"frames"`.
        scale: the preprocessor's `scale` (what it multiplies pixels by).

    Example:
    >>> check_raw_images(np.zeros((2, 8, 8, 1), "uint8"), channels=1)
    """
    check_pixel_dtype(getattr(images, "dtype", np.asarray(images).dtype))
    shape = tuple(getattr(images, "shape", np.shape(images)))
    rank = 5 if encoding == "frames" else 4
    if len(shape) not in (rank - 1, rank):
        layout = (
            "[batch, time, height, width, channels]"
            if rank == 5
            else (
                "[batch, height, width, channels] (or one [height, width, channels] image)"
            )
        )
        raise ValueError(f"Expected images laid out {layout}; got shape {shape}.")
    if len(shape) == rank and shape[0] == 0:
        raise ValueError(
            f"Got an empty batch of images (shape {shape}); pass at least one image."
        )
    if 0 in shape[-3:-1]:
        raise ValueError(
            f"The images have zero height or width (shape {shape}, laid out channels "
            "last); drop the empty images."
        )
    if shape[-1] is not None and channels is not None and shape[-1] != channels:
        raise ValueError(
            f"The model takes {channels}-channel images; got {shape[-1]} channels "
            f"(shape {shape}).{_channel_hint(shape, channels, rank)}"
        )
    values = np.asarray(images)
    if values.dtype.kind == "f":
        _check_float_pixels(values, encoding, scale)


def _channel_hint(shape, channels, rank):
    if len(shape) == rank - 1 and shape[-1] not in (1, 3):
        repeat = "" if channels == 1 else f" and repeat it {channels} times"
        return (
            f" If this is a batch of {shape[0]} grey-scale {shape[1]}x{shape[2]} "
            f"images, add a channel axis{repeat}: "
            + (
                "`images[..., None]`."
                if channels == 1
                else f"`np.repeat(images[..., None], {channels}, axis=-1)`."
            )
        )
    if shape[-1] == 1 and channels == 3:
        return " Convert grey-scale images to RGB (repeat the channel)."
    if len(shape) >= 3 and shape[-3] == channels:
        return " The images look channels-first: move channels last."
    return ""


def _check_float_pixels(values, encoding, scale):
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        first = np.argwhere(~finite)[0]
        where = f"image {first[0]}" if values.ndim >= 4 else "the image"
        raise ValueError(
            f"{bad} of the {values.size} pixel values are NaN or infinite (first in "
            f"{where}); replace them (e.g. `np.nan_to_num`) or drop those images."
        )
    top = 1.0 / scale
    if encoding == "direct" and top > 1.5 and values.size and 0 < values.max() <= 1:
        warnings.warn(
            f"The images are floats in [{values.min():g}, {values.max():g}], but the "
            f"preprocessor expects pixels in 0..{top:g} (it multiplies them by "
            f"scale={scale:g}): if these are 0..1 images, multiply them by {top:g} "
            "first (or build the preprocessor with scale=1.0).",
            stacklevel=6,  # the caller of `predict`/`fit`/`evaluate`
        )


def check_dataset_images(dataset):
    """Refuses a `tf.data.Dataset` whose images are not pixels (checked on its spec)."""
    spec = dataset.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    if hasattr(first, "dtype"):
        check_pixel_dtype(first.dtype, "The dataset's images")


def check_model_inputs(model, x):
    """Checks model-ready inputs against `model`'s input shape, on every call.

    `x` is an array (or a `tf.data.Dataset`, checked on its spec); other
    inputs (dicts, generators) are left to Keras.

    Example:
    >>> check_model_inputs(model, model.preprocess(images))
    """
    if type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec"):
        check_dataset_images(x)
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        if hasattr(spec, "shape") and spec.shape.rank is not None:
            check_input_shape(model, spec)
        return
    if not hasattr(x, "shape") or isinstance(x, dict):
        return
    check_pixel_dtype(x.dtype, "The inputs")
    check_input_shape(model, x)
    if x.shape[0] == 0:
        raise ValueError(
            f"Got an empty batch (shape {tuple(x.shape)}); pass at least one input."
        )
