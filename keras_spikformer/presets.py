"""The preset zoo: finding presets, building models from them, saving new ones."""

import difflib
import inspect
import warnings
from pathlib import Path

import numpy as np

from keras_spikformer.io_utils import atomic_directory, read_json, write_json
from keras_spikformer.version import __version__

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
RECIPE_FILE = "recipe.json"
WEIGHTS_FILE = "model.weights.h5"

# Overrides that never change a weight's shape: weights load directly.
_SHAPE_PRESERVING = {"dtype", "name", "trainable", "num_timesteps"}


def zoo_dir():
    """The zoo: inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "zoo", here.parent / "zoo"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "The preset zoo is missing from this installation (looked in "
        f"{here / 'zoo'} and {here.parent / 'zoo'}); reinstall keras-spikformer."
    )


def preset_names():
    """Sorted names of the presets in the zoo."""
    return sorted(p.name for p in zoo_dir().iterdir() if (p / CONFIG_FILE).is_file())


def catalogue():
    """`{name: metadata}` for every zoo preset (metadata.json plus `has_weights`)."""
    out = {}
    for name in preset_names():
        path = zoo_dir() / name
        meta = (
            read_json(path / METADATA_FILE) if (path / METADATA_FILE).is_file() else {}
        )
        out[name] = {**meta, "has_weights": (path / WEIGHTS_FILE).is_file()}
    return out


def resolve(preset):
    """Returns the directory of `preset` (a zoo name or a preset directory).

    Raises:
        ValueError: unknown names (with the closest names) and directories
            without a `config.json`.
    """
    path = Path(str(preset)).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ValueError(
                f"{path} is not a preset directory: it has no {CONFIG_FILE}. Write "
                "one with `model.save_to_preset(directory)` or pass a zoo name "
                "from `Spikformer.presets`."
            )
        return path
    names = preset_names()
    if str(preset) in names:
        return zoo_dir() / str(preset)
    close = difflib.get_close_matches(str(preset), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown preset {str(preset)!r} (not a zoo name, not a directory).{hint} "
        f"Available presets: {', '.join(names)}."
    )


def read_config(directory, class_name="Spikformer"):
    """The constructor arguments stored in a preset directory's config.json."""
    data = read_json(Path(directory) / CONFIG_FILE)
    if data.get("class_name") != class_name or "config" not in data:
        raise ValueError(
            f"{directory}/{CONFIG_FILE} describes {data.get('class_name')!r}, not "
            f"{class_name}; load it with the matching class."
        )
    return dict(data["config"])


def _check_overrides(cls, overrides):
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    allowed |= {"name", "trainable"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(
            f"Unknown argument(s) {unknown} for {cls.__name__}.from_preset; "
            f"valid overrides: {sorted(allowed)}."
        )


def load(cls, preset, load_weights=None, **overrides):
    """Builds `cls` from `preset`; see `Spikformer.from_preset`."""
    _check_overrides(cls, overrides)
    directory = resolve(preset)
    config = read_config(directory, cls.__name__)
    weights = directory / WEIGHTS_FILE
    if load_weights and not weights.is_file():
        raise ValueError(
            f"Preset {str(preset)!r} ships no weights ({weights} does not exist): the "
            "reference authors released no checkpoint for it. Convert a reference "
            "PyTorch checkpoint (`keras_spikformer.convert`), train the model, or "
            "pass load_weights=False for a freshly initialised model."
        )
    model = cls(**{**config, **overrides})
    meta_path = directory / METADATA_FILE
    metadata = read_json(meta_path) if meta_path.is_file() else {}
    changed = sorted(k for k, v in overrides.items() if config.get(k) != v)
    model.preset_metadata = _derived_metadata(metadata, preset, changed, loaded=False)
    if load_weights is False:
        return model
    if not weights.is_file():
        warnings.warn(
            f"Preset {str(preset)!r} has no weights: the model is freshly "
            "initialised. Train it or load converted reference weights.",
            stacklevel=3,
        )
        return model
    if set(changed) <= _SHAPE_PRESERVING:
        model.load_weights(weights)
    else:
        source = cls(**config)
        source.load_weights(weights)
        skipped = transfer_weights(source, model)
        if skipped:
            warnings.warn(
                f"Overrides {changed} changed the shape of "
                f"{len(skipped)} weight(s), freshly initialised: {skipped}.",
                stacklevel=3,
            )
    model.preset_metadata = _derived_metadata(metadata, preset, changed, loaded=True)
    return model


def _derived_metadata(metadata, preset, changed, loaded):
    """The preset's metadata as it applies to the model actually built.

    Figures measured with the preset's weights (`weights`) stay only when those
    weights were loaded into an unchanged architecture; the paper's figures
    (`paper`, `trainable_params`) only when the architecture is unchanged.
    """
    if not changed and loaded:
        return dict(metadata)
    out = {k: v for k, v in metadata.items() if k not in ("weights", "weights_note")}
    if set(changed) - _SHAPE_PRESERVING:
        out.pop("paper", None)
        out.pop("trainable_params", None)
    out["derived_from"] = {
        "preset": str(preset),
        "overrides": changed,
        "weights_loaded": loaded,
    }
    return out


def transfer_weights(source, target):
    """Copies weights between two models of the same layout where shapes agree.

    Returns:
        The paths of target weights left as they were (shape differs).
    """
    skipped = []
    for src, dst in zip(source.weights, target.weights, strict=True):
        if tuple(src.shape) == tuple(dst.shape):
            dst.assign(src.value)
        else:
            skipped.append(dst.path)
    return skipped


def count_trainable_params(model):
    """Trainable parameters (PyTorch's count: BN running statistics excluded)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _model_weights_only(model):
    """`model` without its optimizer (whose state `save_weights` would also store)."""
    if getattr(model, "optimizer", None) is None:
        return model
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def save(model, directory, overwrite=False):
    """Writes `model` as a preset directory; see `Spikformer.save_to_preset`."""
    config = model.get_config()
    config.pop("name", None)
    config.pop("trainable", None)
    metadata = dict(getattr(model, "preset_metadata", None) or {})
    metadata.update(
        {
            "keras_spikformer_version": __version__,
            "trainable_params": count_trainable_params(model),
        }
    )
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_json(
            tmp / CONFIG_FILE, {"class_name": type(model).__name__, "config": config}
        )
        write_json(tmp / METADATA_FILE, metadata)
        _model_weights_only(model).save_weights(tmp / WEIGHTS_FILE)
