"""Plausibility of untrusted preset configurations, checked before anything is built.

A `config.json` from a hub can ask for `hidden_dim: 10**9` (16 GB allocated
before any error) or `num_layers: 10**6` (minutes of building). The bounds
below are far above every published model (the largest zoo presets have
widths of 1024, 12 blocks, T = 4 at 224 x 224) and far below what exhausts a
machine; `check_architecture` also estimates the parameter count and the
activations of one image before a single layer exists.
"""

import math
import numbers

# Per-key ceilings (inclusive). Lists (per-stage widths, depths) are checked
# element by element, and depths also as a sum.
INT_BOUNDS = {
    "hidden_dim": 8192,
    "widths": 8192,
    "embed_dims": 8192,
    "num_heads": 256,
    "patch_size": 1024,
    "num_timesteps": 256,
    "num_classes": 100_000,
    "spike_levels": 1024,
}
DEPTH_KEYS = ("num_layers", "stage_depths", "depths")
MAX_DEPTH = 128
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 64
# Any other integer in a configuration.
MAX_OTHER_INT = 2**20
MAX_MLP_RATIO = 64.0
# Estimates: float32 parameters, and one image's widest activation over T steps.
MAX_PARAMETERS = 4 * 10**9
MAX_ACTIVATION_BYTES = 32 * 2**30


class ConfigBoundsError(ValueError):
    """A configuration value outside what any model of the zoo could use."""


def check_architecture(config, where):
    """Refuses a backbone/classifier configuration that cannot be a real model.

    Args:
        config: dict of constructor arguments (backbone and task together).
        where: str naming the source, e.g. the `config.json` path.

    Raises:
        ConfigBoundsError: naming the key, the value, the bound and the fix.

    Example:
    >>> check_architecture({"hidden_dim": 10**9}, "preset/config.json")
    Traceback (most recent call last):
    ConfigBoundsError: preset/config.json: `hidden_dim` is 1000000000, ...
    """
    for key, value in config.items():
        _check_values(key, value, where)
    widths = [
        w for k in ("hidden_dim", "widths", "embed_dims") for w in _ints(config.get(k))
    ]
    width = max(widths, default=0)
    depth = sum(sum(_ints(config.get(k))) for k in DEPTH_KEYS)
    mlp = float(config.get("mlp_ratio", 4.0) or 4.0)
    params = depth * (4 + 2 * mlp) * width**2
    if params > MAX_PARAMETERS:
        raise ConfigBoundsError(
            f"{where}: the architecture (width {width}, {depth} blocks, mlp_ratio "
            f"{mlp:g}) would hold about {params:.3g} parameters, more than the "
            f"{MAX_PARAMETERS:.0e} allowed; this is not a real model. Fix the values "
            "or use a zoo preset."
        )
    shape = _ints(config.get("image_shape"))
    steps = config.get("num_timesteps", 1)
    if len(shape) >= 2 and isinstance(steps, numbers.Integral):
        activation = 4 * int(steps) * shape[0] * shape[1] * max(width, 1)
        if activation > MAX_ACTIVATION_BYTES:
            raise ConfigBoundsError(
                f"{where}: one {shape[0]}x{shape[1]} image over {steps} time steps at "
                f"width {width} needs about {activation / 2**30:.0f} GiB of "
                f"activations (more than {MAX_ACTIVATION_BYTES // 2**30} GiB). Lower "
                "`image_shape`, `num_timesteps` or the widths."
            )


def _ints(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)]
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if isinstance(v, numbers.Integral)]
    return []


def _refuse(where, key, value, bound, what="at most"):
    raise ConfigBoundsError(
        f"{where}: `{key}` is {value!r}, but it must be {what} {bound} for any model "
        "of this library. Fix the value (or pass a valid override to from_preset)."
    )


def _check_values(key, value, where):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, numbers.Real) and not math.isfinite(value):
        _refuse(where, key, value, "a finite number", what="")
    if key == "image_shape":
        values = _ints(value)
        bounds = (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, MAX_CHANNELS)
        for i, (v, b) in enumerate(zip(values, bounds, strict=False)):
            if v > b:
                _refuse(where, f"image_shape[{i}]", v, b)
        return
    if key in DEPTH_KEYS:
        values = _ints(value)
        if sum(values) > MAX_DEPTH:
            _refuse(where, key, value, f"{MAX_DEPTH} blocks in total")
        return
    if key == "mlp_ratio" and isinstance(value, numbers.Real) and value > MAX_MLP_RATIO:
        _refuse(where, key, value, MAX_MLP_RATIO)
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_values(key, v, where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_values(f"{key}.{k}", v, where)
        return
    if isinstance(value, numbers.Integral):
        bound = INT_BOUNDS.get(key, MAX_OTHER_INT)
        if value > bound:
            _refuse(where, key, value, bound)


def check_task_files(directory, task_cls, task_args):
    """Cross-checks `task.json` and `preprocessor.json` with the classifier built.

    Each file must name the classifier (or its preprocessor) of the family that
    `config.json` describes, and hold only arguments that class takes: a file
    naming another class, or with keys that would be silently ignored, is
    refused rather than half-applied.

    Args:
        directory: the preset directory.
        task_cls: the classifier class being built (from `config.json`).
        task_args: the arguments read from `task.json`.

    Raises:
        PresetError: naming the file, what it says and the fix.
    """
    import inspect
    from pathlib import Path

    import keras

    from keras_spikformer.models.image_classifier_preprocessor import (
        ImageClassifierPreprocessor,
    )
    from keras_spikformer.presets import (
        PREPROCESSOR_FILE,
        TASK_FILE,
        PresetError,
        read_object,
    )

    pre_cls = task_cls.preprocessor_cls or ImageClassifierPreprocessor
    for name, expected, args in (
        (TASK_FILE, task_cls, task_args),
        (PREPROCESSOR_FILE, pre_cls, None),
    ):
        path = Path(directory) / name
        if not path.is_file():
            continue
        data = read_object(path)
        registered = data.get("registered_name") or data.get("class_name")
        found = keras.saving.get_registered_object(str(registered))
        if found is None or not (
            isinstance(found, type) and issubclass(found, expected)
        ):
            raise PresetError(
                f"{path} describes {registered!r}, but config.json's backbone belongs "
                f"to {task_cls.__name__} (whose {name} describes a "
                f"{expected.__name__}). The preset's files disagree: write it again "
                "with `save_to_preset`."
            )
        config = data["config"] if args is None else args
        accepted = set(inspect.signature(expected.__init__).parameters)
        accepted |= {"name", "trainable", "dtype", "backbone", "preprocessor"}
        unknown = sorted(set(config) - accepted)
        if unknown:
            raise PresetError(
                f"{path} has keys {unknown} that {expected.__name__} does not take "
                f"(it takes {sorted(accepted - {'self', 'kwargs'})}); they would be "
                "ignored. Remove them or write the preset again with `save_to_preset`."
            )
