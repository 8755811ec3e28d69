"""Building models from preset directories, and writing preset directories.

Finding and reading the files: `keras_spikformer.presets`.
"""

import datetime
import inspect
import math
import warnings
from pathlib import Path

import keras

from keras_spikformer import weight_transfer
from keras_spikformer.config_checks import check_architecture, check_task_files
from keras_spikformer.fetch import weights_directory
from keras_spikformer.io_utils import atomic_directory, write_json
from keras_spikformer.presets import (
    CONFIG_FILE,
    METADATA_FILE,
    PREPROCESSOR_FILE,
    RECIPE_FILE,
    TASK_FILE,
    WEIGHTS_FILE,
    PresetError,
    backbone_config,
    is_preset_directory,
    read_json,
    read_object,
    read_recipe,
    resolve,
    resolve_class,
    split_config,
    task_class,
)
from keras_spikformer.version import __version__

# Overrides that never change a variable's path or shape: weights load directly.
SHAPE_PRESERVING = {
    "dtype",
    "name",
    "trainable",
    "num_timesteps",
    "remat",
    "preprocessor",
}

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


# === Building models from presets ===


def _split_overrides(backbone_cls, task_cls, overrides):
    backbone_args = set(inspect.signature(backbone_cls.__init__).parameters)
    task_args = (
        set(inspect.signature(task_cls.__init__).parameters) if task_cls else set()
    )
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
    found = resolve_class(
        directory, CONFIG_FILE, Backbone, None if cls is Backbone else cls
    )
    _split_overrides(found, None, overrides)
    config = backbone_config(directory)
    check_architecture({**config, **overrides}, Path(directory) / CONFIG_FILE)
    weights_dir = weights_directory(directory, load_weights)
    stored = _read_metadata(weights_dir)
    model = found(**{**config, **overrides})
    changed = sorted(k for k, v in overrides.items() if config.get(k) != v)
    _attach_metadata(model, directory, preset, changed, False, stored)
    if _load_weights(model, weights_dir, preset, load_weights, found, config, changed):
        _attach_metadata(model, directory, preset, changed, True, stored)
    return model


def load_task(cls, preset, load_weights, overrides):
    """Builds `cls` (a classifier class) from a preset; see `ImageClassifier.from_preset`."""
    from keras_spikformer.models.backbone import Backbone
    from keras_spikformer.models.image_classifier import ImageClassifier

    directory = resolve(preset)
    if cls is ImageClassifier:
        cls = task_class(directory)
    backbone_cls = resolve_class(directory, CONFIG_FILE, Backbone, cls.backbone_cls)
    to_backbone, to_task = _split_overrides(backbone_cls, cls, overrides)
    backbone_args, task_args = split_config(directory)
    check_task_files(directory, cls, task_args)
    check_architecture(
        {**backbone_args, **task_args, **overrides}, Path(directory) / CONFIG_FILE
    )
    weights_dir = weights_directory(directory, load_weights)
    stored = _read_metadata(weights_dir)
    backbone = backbone_cls(**{**backbone_args, **to_backbone})
    if "preprocessor" not in to_task:
        to_task["preprocessor"] = _load_preprocessor(cls, directory, backbone)
    model = cls(backbone=backbone, **{**task_args, **to_task})
    old = {**backbone_args, **task_args}
    changed = sorted(
        k for k, v in overrides.items() if k != "preprocessor" and old.get(k) != v
    )
    _attach_metadata(model, directory, preset, changed, False, stored)

    def build_source():
        return cls(backbone=backbone_cls(**backbone_args), **task_args)

    if _load_weights(
        model, weights_dir, preset, load_weights, build_source, None, changed
    ):
        _attach_metadata(model, directory, preset, changed, True, stored)
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

    to_backbone, to_task = _split_overrides(
        task_cls.backbone_cls, task_cls, architecture
    )
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
        config = dict(read_object(path)["config"])
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


def _load_weights(
    model, directory, preset, load_weights, build_source, config, changed
):
    """Loads the weights of `directory` (the preset, or its converted copy in the
    fetch cache) into `model`; returns whether it did."""
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


def _attach_metadata(model, directory, preset, changed, loaded, stored):
    """The preset's metadata and recipe as they apply to the model built.

    Figures measured with the preset's weights (`weights`) stay only when those
    weights were loaded into an unchanged architecture; the paper's figures
    (`paper`, `trainable_params`) only when the architecture is unchanged.
    `stored` is the preset's parsed `metadata.json` (read once per load).
    """
    metadata = dict(stored)
    if changed or not loaded:
        metadata = {
            k: v for k, v in metadata.items() if k not in ("weights", "weights_note")
        }
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


def _read_metadata(directory):
    path = Path(directory) / METADATA_FILE
    metadata = read_json(path) if path.is_file() else {}
    if not isinstance(metadata, dict):
        raise PresetError(
            f"{path} is not a JSON object; write the preset again with `save_to_preset`."
        )
    return metadata


# === Writing presets ===


def count_trainable_params(model):
    """Trainable parameters (PyTorch's count: BN running statistics excluded)."""
    return int(sum(math.prod(int(d) for d in w.shape) for w in model.trainable_weights))


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
    owned = ("keras-spikformer preset", is_preset_directory)
    with atomic_directory(directory, overwrite=overwrite, owned=owned) as tmp:
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
        recipe["eval"] = {
            "crop_ratio": pre.crop_pct,
            "interpolation": pre.interpolation,
        }
    return recipe
