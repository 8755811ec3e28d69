"""`Backbone`: the base class of every family's feature extractor."""

import math
import numbers
import re

import keras

from keras_spikformer import preset_builder, presets


def check_int(name, value, minimum=1):
    """`value` as an int, or a `TypeError`/`ValueError` naming `name` and the fix.

    Integers only (also numpy integers); floats such as `2.5` or strings such
    as `"4"` are refused rather than silently truncated or parsed.

    Example:
    >>> num_heads = check_int("num_heads", num_heads)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer; got {value!r} ({type(value).__name__}). "
            f"Pass e.g. {name}={max(minimum, 1)}."
        )
    if int(value) < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_finite(name, value, allow_none=False):
    """`value` as a finite float, or a `ValueError` naming `name`.

    Example:
    >>> v_threshold = check_finite("v_threshold", v_threshold)
    """
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number; got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.")
    return number


def check_image_shape(image_shape, channels=None):
    """`image_shape` as a tuple of 3 positive ints `(height, width, channels)`."""
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3:
        raise ValueError(
            f"`image_shape` must be (height, width, channels); got {image_shape!r}."
        )
    return tuple(check_int(f"image_shape[{i}]", d) for i, d in enumerate(shape))


def neuron_config(tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    """The LIF options every neuron of a backbone shares, as plain config values.

    Example:
    >>> config = neuron_config(2.0, 1.0, 0.0, True, True, "sigmoid")
    """
    from keras_spikformer.neurons import get_surrogate
    from keras_spikformer.neurons.surrogates import serialize

    return {
        "tau": check_finite("tau", tau),
        "v_threshold": check_finite("v_threshold", v_threshold),
        "v_reset": check_finite("v_reset", v_reset, allow_none=True),
        "decay_input": bool(decay_input),
        "detach_reset": bool(detach_reset),
        "surrogate": serialize(get_surrogate(surrogate)),
    }


def dtype_policy(dtype):
    """`dtype` as a `keras.DTypePolicy`; `None` is the global policy."""
    return keras.dtype_policies.get(dtype) if dtype else keras.config.dtype_policy()


def check_input_shape(model, inputs):
    """Raises a clear `ValueError` when `inputs` cannot feed `model`."""
    expected = tuple(model.inputs[0].shape[1:])
    shape = tuple(getattr(inputs, "shape", ()))
    if len(shape) != len(expected) + 1 or any(
        e is not None and s is not None and s != e
        for s, e in zip(shape[1:], expected, strict=False)
    ):
        layout = (
            "[batch, time, height, width, channels]"
            if len(expected) == 4
            else "[batch, height, width, channels]"
        )
        hint = ""
        if len(shape) == len(expected) + 1 and shape[-3] == expected[-1]:
            hint = " The input looks channels-first: move channels last first."
        raise ValueError(
            f"{model.name} expects inputs of shape (batch, {', '.join(map(str, expected))}) "
            f"laid out {layout} (channels last); got shape {shape}.{hint} Resize the "
            "images (a task with a preprocessor does it for you: `task.predict(images)`) "
            "or rebuild the model for this shape, e.g. "
            "`Model.from_preset(name, image_shape=...)`."
        )


class InputCheckMixin:
    """Validates the input shape before running a functional graph."""

    def __call__(self, inputs, *args, **kwargs):
        check_input_shape(self, inputs)
        return super().__call__(inputs, *args, **kwargs)


class PresetCatalogue:
    """Class attribute: `cls.presets` maps this class's zoo presets to their metadata."""

    def __get__(self, instance, owner):
        backbone_cls = getattr(owner, "backbone_cls", None) or owner
        return presets.catalogue(backbone_cls)


class Backbone(InputCheckMixin, keras.Model):
    """Base class of the families' backbones (functional subclasses).

    A subclass builds a functional graph from `keras.Input` in its `__init__`,
    calls `super().__init__(inputs=..., outputs=..., dtype=dtype, **kwargs)`,
    then stores every constructor argument; its `get_config` adds them to
    this class's config (`name`, `trainable`, `dtype`), so
    `from_config(get_config())` rebuilds it and `.keras` files reload it.

    Presets: `from_preset` reads zoo names, preset directories and `hf://`
    handles; `save_to_preset` writes `config.json`, `model.weights.h5` and
    `metadata.json`. `cls.presets` lists the zoo presets of this class.

    Example:
    >>> backbone = keras_spikformer.SpikformerBackbone.from_preset(
    ...     "spikformer_4_384_cifar10")
    >>> backbone.save_to_preset("./my_backbone")
    """

    presets = PresetCatalogue()

    def __init__(self, *args, dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dtype_policy = dtype_policy(dtype)  # Functional models ignore `dtype`

    @property
    def dtype_policy_config(self):
        """The serialised dtype policy (what `get_config` stores)."""
        return keras.dtype_policies.serialize(self.dtype_policy)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy_config,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=None, **overrides):
        """Builds the backbone of a preset.

        Args:
            preset: a zoo name (see `cls.presets`), a preset directory, or an
                `hf://owner/name` handle.
            load_weights: `None` loads weights when the preset has them;
                `True` requires them; `False` skips them.
            **overrides: constructor arguments to change. Weights whose path
                and shape still match are loaded; the others are freshly
                initialised and named in one warning.

        Returns:
            A backbone of this class.

        Example:
        >>> SpikformerBackbone.from_preset("spikformer_tiny_cifar", num_timesteps=2)
        """
        return preset_builder.load_backbone(cls, preset, load_weights, overrides)

    def save_to_preset(self, directory, overwrite=False):
        """Writes `config.json`, `model.weights.h5` and `metadata.json` atomically.

        Example:
        >>> backbone.save_to_preset("./my_backbone")
        """
        preset_builder.save_preset(self, directory, overwrite=overwrite)

    def get_layout_map(self, device_mesh, model_axis="model"):
        """A `keras.distribution.LayoutMap` for model parallelism on JAX.

        This generic map splits every dense and convolution kernel along its
        output axis over `model_axis` where that axis divides, and replicates
        everything else; families with a better (Megatron-style) map
        override it.

        Args:
            device_mesh: a `keras.distribution.DeviceMesh` with an axis named
                `model_axis`.
            model_axis: str, the mesh axis to shard over.

        Returns:
            A `keras.distribution.LayoutMap` keyed by variable path.

        Example:
        >>> mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"])
        >>> layout_map = backbone.get_layout_map(mesh)
        """
        if model_axis not in device_mesh.axis_names:
            raise ValueError(
                f"The device mesh has axes {list(device_mesh.axis_names)}, not "
                f"{model_axis!r}; build it with axis_names=('batch', {model_axis!r}) "
                "or pass model_axis=<one of its axes>."
            )
        size = device_mesh.shape[list(device_mesh.axis_names).index(model_axis)]
        layout_map = keras.distribution.LayoutMap(device_mesh)
        for variable in self.weights:
            shape = tuple(variable.shape)
            if variable.path.endswith("kernel") and shape and shape[-1] % size == 0:
                key = "(?:.*/)?" + re.escape(variable.path)
                layout_map[key] = (None,) * (len(shape) - 1) + (model_axis,)
        return layout_map
