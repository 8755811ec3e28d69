"""Preset directories: finding them (zoo, local, hf://), reading them, writing them.

A preset directory holds, as in KerasHub:

- `config.json`: the backbone (`module`, `class_name`, `config`, `registered_name`);
- `task.json`: the classifier (its config without the backbone), when there is one;
- `preprocessor.json`: the classifier's preprocessor;
- `model.weights.h5` (backbone) and `task.weights.h5` (the rest), where weights exist;
- `metadata.json`: versions, parameter count, date, the paper's figures;
- `recipe.json`: the training recipe.
"""

import datetime
import difflib
import inspect
import json
import warnings
from pathlib import Path

import keras

from keras_spikformer import weight_transfer
from keras_spikformer.io_utils import atomic_directory, write_json
from keras_spikformer.version import __version__

CONFIG_FILE = "config.json"
TASK_FILE = "task.json"
PREPROCESSOR_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"
RECIPE_FILE = "recipe.json"
WEIGHTS_FILE = "model.weights.h5"
TASK_WEIGHTS_FILE = "task.weights.h5"
# Overrides that never change a variable's path or shape: weights load directly.
SHAPE_PRESERVING = {"dtype", "name", "trainable", "num_timesteps", "remat", "preprocessor"}
PRESET_FILES = (CONFIG_FILE, TASK_FILE, PREPROCESSOR_FILE, METADATA_FILE, RECIPE_FILE)

# A recipe for models saved without one: fine-tuning defaults.
DEFAULT_RECIPE = {
    "optimizer": "adamw",
    "learning_rate": 1e-4,
    "weight_decay": 0.01,
    "schedule": "cosine",
    "epochs": 10,
    "global_batch_size": 32,
    "lr_scaling_rule": "none: fine-tuning defaults (the model was saved without a recipe)",
    "augment": {},
}


class PresetError(ValueError):
    """A preset that cannot be found or read, with the file and the fix."""


# === Finding presets ===


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


def catalogue(backbone_cls=None):
    """`{name: metadata}` of the zoo presets (of `backbone_cls` when given).

    Each entry is the preset's metadata.json plus `has_weights`.
    """
    out = {}
    for name in preset_names():
        path = zoo_dir() / name
        if backbone_cls is not None and backbone_class_name(path) != backbone_cls.__name__:
            continue
        meta = read_json(path / METADATA_FILE) if (path / METADATA_FILE).is_file() else {}
        out[name] = {**meta, "has_weights": (path / WEIGHTS_FILE).is_file()}
    return out


def resolve(preset):
    """Returns the directory of `preset`: a zoo name, a directory or an `hf://` handle.

    Raises:
        PresetError: unknown names (with the closest names), directories
            without a `config.json`, unsupported schemes.
    """
    text = str(preset)
    if "://" in text:
        from keras_spikformer import hub

        return hub.download_preset(text)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise PresetError(
                f"{path} is not a preset directory: it has no {CONFIG_FILE}. Write "
                "one with `model.save_to_preset(directory)` or pass a zoo name "
                "(see `keras_spikformer.Spikformer.presets`)."
            )
        return path
    names = preset_names()
    if text in names:
        return zoo_dir() / text
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise PresetError(
        f"Unknown preset {text!r} (not a zoo name, not a directory).{hint} "
        f"Available presets: {', '.join(names)}."
    )


# === Reading preset files ===


def read_json(path):
    """Parses a JSON file; errors name the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PresetError(
            f"{path} is missing: the preset directory {path.parent} is incomplete. "
            "Write it again with `save_to_preset`."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PresetError(
            f"{path} is corrupt (not valid JSON: {e}). Restore it or write the "
            "preset again with `save_to_preset`."
        ) from None


def _read_object(path):
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise PresetError(
            f"{path} is not a serialised Keras object (it needs 'class_name' and "
            "'config'); write the preset again with `save_to_preset`."
        )
    return data


def backbone_class_name(directory):
    """The backbone class a preset directory describes (`None` if unreadable)."""
    try:
        data = json.loads((Path(directory) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if "registered_name" not in data and data.get("class_name") == "Spikformer":
        return "SpikformerBackbone"  # layout of keras-spikformer 0.1
    return data.get("class_name")


def backbone_config(directory):
    """The backbone constructor arguments stored in a preset's `config.json`."""
    return _split_legacy(directory)[0]


def read_config(directory, class_name=None):
    """Backbone arguments plus `num_classes`: the whole architecture of a preset."""
    backbone_args, task_args = _split_legacy(directory)
    return {**backbone_args, **{k: v for k, v in task_args.items() if k == "num_classes"}}


def _split_legacy(directory):
    """`(backbone_args, task_args)` of a preset directory, either layout."""
    directory = Path(directory)
    data = _read_object(directory / CONFIG_FILE)
    config = dict(data["config"])
    if "registered_name" not in data and data.get("class_name") == "Spikformer":
        task = {"num_classes": config.pop("num_classes", 1000)}
        return config, task
    for key in ("name", "trainable"):
        config.pop(key, None)
    task = {}
    if (directory / TASK_FILE).is_file():
        task = dict(_read_object(directory / TASK_FILE)["config"])
        for key in ("name", "trainable", "backbone", "preprocessor"):
            task.pop(key, None)
    return config, task


def _resolve_class(directory, file, base, wanted):
    data = _read_object(Path(directory) / file)
    if "registered_name" not in data and data.get("class_name") == "Spikformer":
        data = {"registered_name": "keras_spikformer>SpikformerBackbone"}
    registered = data.get("registered_name") or data.get("class_name")
    found = keras.saving.get_registered_object(registered)
    if found is None or not (isinstance(found, type) and issubclass(found, base)):
        raise PresetError(
            f"{Path(directory) / file} describes {registered!r}, which is not a "
            f"keras-spikformer {base.__name__}; is this a preset of keras-spikformer?"
        )
    if wanted is not None and found is not wanted and not issubclass(found, wanted):
        raise PresetError(
            f"{Path(directory) / file} describes a {found.__name__}, not a "
            f"{wanted.__name__}: load it with `{_task_name(found)}.from_preset(...)` "
            "or pick a preset of this family (see `.presets`)."
        )
    return found


def _task_name(backbone_cls):
    for task_cls in _task_classes():
        if task_cls.backbone_cls is backbone_cls:
            return task_cls.__name__
    return backbone_cls.__name__


def _task_classes():
    from keras_spikformer.models.image_classifier import ImageClassifier

    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    return [c for c in walk(ImageClassifier) if c.backbone_cls is not None]


def task_class(preset):
    """The classifier class of a preset (from its backbone), e.g. `Spikformer`."""
    from keras_spikformer.models.backbone import Backbone

    directory = resolve(preset)
    backbone_cls = _resolve_class(directory, CONFIG_FILE, Backbone, None)
    for task_cls in _task_classes():
        if task_cls.backbone_cls is backbone_cls:
            return task_cls
    raise PresetError(f"No classifier is registered for {backbone_cls.__name__}.")


def read_recipe(directory):
    """The preset's recipe dict (`recipe.json`)."""
    return read_json(Path(directory) / RECIPE_FILE)


# === Building models from presets ===


def _split_overrides(backbone_cls, task_cls, overrides):
    backbone_args = set(inspect.signature(backbone_cls.__init__).parameters)
    task_args = set(inspect.signature(task_cls.__init__).parameters) if task_cls else set()
    backbone_args -= {"self", "kwargs"}
    task_args -= {"self", "kwargs", "backbone"}
    unknown = sorted(set(overrides) - backbone_args - task_args - {"name", "trainable"})
    if unknown:
        valid = sorted((backbone_args | task_args) - {"preprocessor"})
        raise TypeError(
            f"Unknown argument(s) {unknown} for "
            f"{(task_cls or backbone_cls).__name__}.from_preset; valid overrides: {valid}."
        )
    to_backbone = {k: v for k, v in overrides.items() if k in backbone_args}
    to_task = {k: v for k, v in overrides.items() if k not in backbone_args}
    return to_backbone, to_task


def load_backbone(cls, preset, load_weights, overrides):
    """Builds `cls` (a backbone class) from a preset; see `Backbone.from_preset`."""
    from keras_spikformer.models.backbone import Backbone

    directory = resolve(preset)
    found = _resolve_class(directory, CONFIG_FILE, Backbone, None if cls is Backbone else cls)
    _split_overrides(found, None, overrides)
    config = backbone_config(directory)
    model = found(**{**config, **overrides})
    changed = sorted(k for k, v in overrides.items() if config.get(k) != v)
    _attach_metadata(model, directory, preset, changed, loaded=False)
    if _load_weights(model, directory, preset, load_weights, found, config, changed):
        _attach_metadata(model, directory, preset, changed, loaded=True)
    return model


def load_task(cls, preset, load_weights, overrides):
    """Builds `cls` (a classifier class) from a preset; see `ImageClassifier.from_preset`."""
    from keras_spikformer.models.backbone import Backbone
    from keras_spikformer.models.image_classifier import ImageClassifier

    directory = resolve(preset)
    if cls is ImageClassifier:
        cls = task_class(directory)
    backbone_cls = _resolve_class(directory, CONFIG_FILE, Backbone, cls.backbone_cls)
    to_backbone, to_task = _split_overrides(backbone_cls, cls, overrides)
    backbone_args, task_args = _split_legacy(directory)
    backbone = backbone_cls(**{**backbone_args, **to_backbone})
    if "preprocessor" not in to_task:
        to_task["preprocessor"] = _load_preprocessor(cls, directory, backbone)
    model = cls(backbone=backbone, **{**task_args, **to_task})
    old = {**backbone_args, **task_args}
    changed = sorted(k for k, v in overrides.items() if k != "preprocessor" and old.get(k) != v)
    _attach_metadata(model, directory, preset, changed, loaded=False)

    def build_source():
        return cls(backbone=backbone_cls(**backbone_args), **task_args)

    if _load_weights(model, directory, preset, load_weights, build_source, None, changed):
        _attach_metadata(model, directory, preset, changed, loaded=True)
    return model


def build_task(task_cls, architecture, recipe=None):
    """A fresh classifier from flat architecture arguments and a recipe dict.

    Args:
        task_cls: the classifier class, e.g. `Spikformer`.
        architecture: backbone arguments plus task arguments (`num_classes`).
        recipe: dict (`recipe.json`) whose normalisation and evaluation crop
            make the preprocessor; `None` for no preprocessor.

    Returns:
        A `task_cls` whose `preset_recipe` is `recipe`.

    Example:
    >>> build_task(Spikformer, {**backbone_args, "num_classes": 10}, recipe)
    """
    from keras_spikformer.models.image_classifier_preprocessor import (
        ImageClassifierPreprocessor,
    )

    to_backbone, to_task = _split_overrides(task_cls.backbone_cls, task_cls, architecture)
    backbone = task_cls.backbone_cls(**to_backbone)
    if recipe is not None and "preprocessor" not in to_task:
        pre_cls = task_cls.preprocessor_cls or ImageClassifierPreprocessor
        to_task["preprocessor"] = pre_cls.from_recipe(
            recipe, backbone.image_shape, getattr(backbone, "encoding", "direct")
        )
    model = task_cls(backbone=backbone, **to_task)
    model.preset_recipe = recipe
    return model


def _load_preprocessor(task_cls, directory, backbone):
    """The preset's preprocessor, adapted to the backbone's image size."""
    from keras_spikformer.models.image_classifier_preprocessor import (
        ImageClassifierPreprocessor,
    )

    path = Path(directory) / PREPROCESSOR_FILE
    encoding = getattr(backbone, "encoding", "direct")
    if path.is_file():
        config = dict(_read_object(path)["config"])
    elif (Path(directory) / RECIPE_FILE).is_file():  # layout of keras-spikformer 0.1
        config = ImageClassifierPreprocessor.from_recipe(
            read_recipe(directory), backbone.image_shape, encoding
        ).get_config()
        config.pop("name", None)
    else:
        return None
    config["image_size"] = list(backbone.image_shape[:2])
    pre_cls = task_cls.preprocessor_cls or ImageClassifierPreprocessor
    try:
        return pre_cls.from_config(config)
    except (TypeError, ValueError) as e:
        raise PresetError(f"{path} is invalid: {e}") from None


def _load_weights(model, directory, preset, load_weights, build_source, config, changed):
    """Loads the preset's weights into `model`; returns whether it did."""
    weights = Path(directory) / WEIGHTS_FILE
    if load_weights is False:
        return False
    if not weights.is_file():
        if load_weights:
            raise PresetError(
                f"Preset {str(preset)!r} ships no weights ({weights} does not exist): "
                "convert a reference checkpoint (`keras-spikformer convert`), train "
                "the model, or pass load_weights=False for a fresh model."
            )
        warnings.warn(
            f"Preset {str(preset)!r} has no weights: the model is freshly "
            "initialised. Train it or load converted reference weights.",
            stacklevel=4,
        )
        return False
    if not set(changed) - SHAPE_PRESERVING:
        weight_transfer.load_preset_weights(model, directory)
        return True
    source = build_source(**config) if config is not None else build_source()
    weight_transfer.load_preset_weights(source, directory)
    skipped = weight_transfer.transfer_by_path(source, model)
    if skipped:
        warnings.warn(
            f"Overrides {changed} changed {len(skipped)} weight(s); they are freshly "
            f"initialised: {skipped}.",
            stacklevel=4,
        )
    return True


def _attach_metadata(model, directory, preset, changed, loaded):
    """The preset's metadata and recipe as they apply to the model built.

    Figures measured with the preset's weights (`weights`) stay only when those
    weights were loaded into an unchanged architecture; the paper's figures
    (`paper`, `trainable_params`) only when the architecture is unchanged.
    """
    path = Path(directory) / METADATA_FILE
    metadata = read_json(path) if path.is_file() else {}
    if changed or not loaded:
        metadata = {k: v for k, v in metadata.items() if k not in ("weights", "weights_note")}
        if set(changed) - SHAPE_PRESERVING:
            metadata.pop("paper", None)
            metadata.pop("trainable_params", None)
        metadata["derived_from"] = {
            "preset": str(preset),
            "overrides": changed,
            "weights_loaded": loaded,
        }
    model.preset_metadata = metadata
    recipe = Path(directory) / RECIPE_FILE
    model.preset_recipe = read_json(recipe) if recipe.is_file() else None


# === Writing presets ===


def count_trainable_params(model):
    """Trainable parameters (PyTorch's count: BN running statistics excluded)."""
    return int(sum(int(np_prod(w.shape)) for w in model.trainable_weights))


def np_prod(shape):
    out = 1
    for d in shape:
        out *= int(d)
    return out


def save_preset(
    model, directory, overwrite=False, metadata=None, recipe=None, include_weights=True
):
    """Writes `model` (a backbone or a classifier) as a preset directory, atomically.

    Args:
        model: a `Backbone` or an `ImageClassifier`.
        directory: str or path.
        overwrite: bool, replace an existing directory.
        metadata: dict merged over the model's `preset_metadata`.
        recipe: dict, the training recipe; defaults to the model's
            `preset_recipe`, else fine-tuning defaults.
        include_weights: bool, write the weight files (zoo presets of
            architectures without released weights pass `False`).

    Example:
    >>> save_preset(model, "./my_model")
    """
    from keras_spikformer.models.image_classifier import ImageClassifier

    is_task = isinstance(model, ImageClassifier)
    backbone = model.backbone if is_task else model
    info = dict(getattr(model, "preset_metadata", None) or {})
    info.update(metadata or {})
    info.update(
        {
            "keras_version": keras.__version__,
            "keras_spikformer_version": __version__,
            "parameter_count": int(model.count_params()),
            "trainable_params": count_trainable_params(model),
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        }
    )
    recipe = recipe or getattr(model, "preset_recipe", None) or _default_recipe(model)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        write_json(tmp / CONFIG_FILE, _serialize(backbone))
        if is_task:
            task = _serialize(model)
            task["config"].pop("backbone", None)
            task["config"].pop("preprocessor", None)
            write_json(tmp / TASK_FILE, task)
            if model.preprocessor is not None:
                write_json(tmp / PREPROCESSOR_FILE, _serialize(model.preprocessor))
        write_json(tmp / METADATA_FILE, info)
        write_json(tmp / RECIPE_FILE, recipe)
        if include_weights:
            weight_transfer.save_preset_weights(model, tmp)


def _serialize(obj):
    data = keras.saving.serialize_keras_object(obj)
    data.pop("build_config", None)
    data.pop("compile_config", None)
    return data


def _default_recipe(model):
    recipe = dict(DEFAULT_RECIPE)
    pre = getattr(model, "preprocessor", None)
    if pre is not None and pre.mean is not None:
        recipe["normalize"] = {"mean": pre.mean, "std": pre.std}
        recipe["eval"] = {"crop_ratio": pre.crop_pct, "interpolation": pre.interpolation}
    return recipe
