"""The preset's classifier for a run: fresh, the preset's weights, or another model's."""

import warnings
from pathlib import Path

import keras

from keras_spikformer import presets


def build_model(preset, weights="none", num_classes=None, dtype=None, **options):
    """The preset's classifier (any family) for training or evaluation.

    Args:
        preset: zoo name, preset directory or `hf://` handle (the architecture).
        weights: `"none"` (fresh), `"preset"` (the preset's weights) or a path
            to a preset directory or a `.keras` file.
        num_classes: new head size, or `None` to keep the preset's.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.
        **options: other classifier arguments the recipe needs (e.g.
            `per_step_logits=True` for the TET loss).

    Returns:
        The preset's task model (e.g. a `Spikformer` classifier).

    Example:
    >>> model = build_model("spikformer_tiny_digits", num_classes=10)
    """
    from keras_spikformer.weight_transfer import transfer_by_path

    task_cls = presets.task_class(preset)
    overrides = {k: v for k, v in (("num_classes", num_classes), ("dtype", dtype)) if v}
    overrides.update(options)
    if weights in ("none", "preset"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if weights == "none" else "default")
            return task_cls.from_preset(
                preset, load_weights=weights == "preset", **overrides
            )
    path = Path(weights).expanduser()
    if path.is_dir():
        source = presets.task_class(path).from_preset(str(path), load_weights=True)
    elif path.suffix == ".keras" and path.is_file():
        source = _load_keras_file(path)
    else:
        raise FileNotFoundError(
            f"--weights {weights!r}: expected 'none', 'preset', a preset directory or "
            "a .keras file (no such file or directory)."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = task_cls.from_preset(preset, load_weights=False, **overrides)
    skipped = transfer_by_path(source, model)
    if skipped:
        warnings.warn(
            f"Freshly initialised (shape or path differs from {path}): {skipped}",
            stacklevel=2,
        )
    return model


def _load_keras_file(path):
    """`keras.saving.load_model`, with corrupt files reported as corrupt."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"--weights {path} is corrupt: not a .keras archive (a zip file). Pass a "
            "file written by `model.save(...)` or a preset directory."
        )
    try:
        return keras.saving.load_model(path)
    except Exception as e:
        raise ValueError(
            f"--weights {path} cannot be loaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); the file is corrupt or was "
            "saved by another library."
        ) from None
