"""Preset directories: finding them (zoo, local, hf://) and reading their files.

Building models from presets and writing presets: `keras_spikformer.preset_builder`.

A preset directory holds, as in KerasHub:

- `config.json`: the backbone (`module`, `class_name`, `config`, `registered_name`);
- `task.json`: the classifier (its config without the backbone), when there is one;
- `preprocessor.json`: the classifier's preprocessor;
- `model.weights.h5` (backbone) and `task.weights.h5` (the rest), where weights exist;
- `metadata.json`: versions, parameter count, date, the paper's figures;
- `recipe.json`: the training recipe.
"""

import difflib
import json
import math
import os
from pathlib import Path

import keras

CONFIG_FILE = "config.json"
TASK_FILE = "task.json"
PREPROCESSOR_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"
RECIPE_FILE = "recipe.json"
WEIGHTS_FILE = "model.weights.h5"
TASK_WEIGHTS_FILE = "task.weights.h5"
PRESET_FILES = (CONFIG_FILE, TASK_FILE, PREPROCESSOR_FILE, METADATA_FILE, RECIPE_FILE)
# The largest zoo JSON file is a few KB; a preset file above this is not ours.
MAX_JSON_BYTES = 4 * 2**20


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
        if (
            backbone_cls is not None
            and backbone_class_name(path) != backbone_cls.__name__
        ):
            continue
        meta = (
            read_json(path / METADATA_FILE) if (path / METADATA_FILE).is_file() else {}
        )
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

        return check_preset_files(hub.download_preset(text))
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise PresetError(
                f"{path} is not a preset directory: it has no {CONFIG_FILE}. Write "
                "one with `model.save_to_preset(directory)` or pass a zoo name "
                "(see `keras_spikformer.Spikformer.presets`)."
            )
        return check_preset_files(path)
    names = preset_names()
    if text in names:
        return zoo_dir() / text
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise PresetError(
        f"Unknown preset {text!r} (not a zoo name, not a directory).{hint} "
        f"Available presets: {', '.join(names)}."
    )


def check_preset_files(directory):
    """Refuses a preset whose files are not regular files inside it.

    A preset's files may be symbolic links only to files inside the preset
    directory (or, for a Hugging Face cache snapshot, inside that repository's
    cache folder, where the Hub keeps them): a crafted preset cannot make
    `/etc/passwd`, `/dev/zero` or a FIFO one of its files.

    Returns:
        `directory` as a `Path`.

    Raises:
        PresetError: naming the file and where it points.
    """
    from keras_spikformer.hdf5_safety import check_regular_file

    directory = Path(directory)
    real = directory.resolve()
    root = real.parent.parent if real.parent.name == "snapshots" else real
    for name in (*PRESET_FILES, WEIGHTS_FILE, TASK_WEIGHTS_FILE):
        path = directory / name
        if not os.path.lexists(path):
            continue
        target = path.resolve()
        if not target.is_relative_to(root):
            raise PresetError(
                f"{path} points outside the preset directory (to {target}): a preset's "
                "files must be inside it. Refusing to read it; copy the real file "
                "into the preset directory."
            )
        check_regular_file(path, PresetError)
    return directory


def is_preset_directory(directory):
    """Whether `directory` is a preset this library wrote (and nothing else).

    It must hold `config.json` describing a keras-spikformer backbone and
    `metadata.json`, and only preset files: `save_to_preset(overwrite=True)`
    replaces such a directory and no other.
    """
    from keras_spikformer.io_utils import is_owned_directory

    allowed = (*PRESET_FILES, WEIGHTS_FILE, TASK_WEIGHTS_FILE, "README.md")
    if not is_owned_directory(directory, (CONFIG_FILE, METADATA_FILE), allowed):
        return False
    try:
        data = read_json(Path(directory) / CONFIG_FILE)
    except PresetError:
        return False
    registered = data.get("registered_name") if isinstance(data, dict) else None
    return isinstance(registered, str) and registered.startswith("keras_spikformer>")


# === Reading preset files ===


def read_json(path, max_bytes=MAX_JSON_BYTES):
    """Parses a preset's JSON file; errors name the file.

    The file must be a regular file of at most `max_bytes`; `NaN`, `Infinity`
    and numbers that overflow to infinity are refused (no preset value is
    legitimately non-finite), and so is nesting deeper than Python can parse.
    """
    from keras_spikformer.hdf5_safety import check_regular_file

    path = Path(path)
    if not path.exists():
        raise PresetError(
            f"{path} is missing: the preset directory {path.parent} is incomplete. "
            "Write it again with `save_to_preset`."
        )
    check_regular_file(path, PresetError)
    size = path.stat().st_size
    if size > max_bytes:
        raise PresetError(
            f"{path} is {size:,} bytes, more than the {max_bytes:,} a preset's JSON "
            "file may have: it is not a keras-spikformer preset file (or is crafted). "
            "Write the preset again with `save_to_preset`."
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(max_bytes + 1)
        return json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise PresetError(
            f"{path} is corrupt (not valid JSON: {reason}). Restore it or write the "
            "preset again with `save_to_preset`."
        ) from None


def _non_finite(name):
    raise ValueError(f"{name} is not a valid value here (values must be finite)")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        _non_finite(text)
    return value


def read_object(path):
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
        data = read_json(Path(directory) / CONFIG_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if "registered_name" not in data and data.get("class_name") == "Spikformer":
        return "SpikformerBackbone"  # layout of keras-spikformer 0.1
    return data.get("class_name")


def backbone_config(directory):
    """The backbone constructor arguments stored in a preset's `config.json`."""
    return split_config(directory)[0]


def read_config(directory, class_name=None):
    """Backbone arguments plus `num_classes`: the whole architecture of a preset."""
    backbone_args, task_args = split_config(directory)
    return {
        **backbone_args,
        **{k: v for k, v in task_args.items() if k == "num_classes"},
    }


def split_config(directory):
    """`(backbone_args, task_args)` of a preset directory, either layout."""
    directory = Path(directory)
    data = read_object(directory / CONFIG_FILE)
    config = dict(data["config"])
    if "registered_name" not in data and data.get("class_name") == "Spikformer":
        task = {"num_classes": config.pop("num_classes", 1000)}
        return config, task
    for key in ("name", "trainable"):
        config.pop(key, None)
    task = {}
    if (directory / TASK_FILE).is_file():
        task = dict(read_object(directory / TASK_FILE)["config"])
        for key in ("name", "trainable", "backbone", "preprocessor"):
            task.pop(key, None)
    return config, task


def resolve_class(directory, file, base, wanted):
    data = read_object(Path(directory) / file)
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
    for task_cls in task_classes():
        if task_cls.backbone_cls is backbone_cls:
            return task_cls.__name__
    return backbone_cls.__name__


def task_classes():
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
    backbone_cls = resolve_class(directory, CONFIG_FILE, Backbone, None)
    for task_cls in task_classes():
        if task_cls.backbone_cls is backbone_cls:
            return task_cls
    raise PresetError(f"No classifier is registered for {backbone_cls.__name__}.")


def read_recipe(directory):
    """The preset's recipe dict (`recipe.json`)."""
    return read_json(Path(directory) / RECIPE_FILE)
