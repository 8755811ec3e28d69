"""Weights of preset directories: writing, reading, and transfer by variable path."""

import math
import warnings
from pathlib import Path

import h5py
import keras

from keras_spikformer.hdf5_safety import UnsafeHDF5Error, inspect_hdf5, read_datasets

WEIGHTS_FILE = "model.weights.h5"
TASK_WEIGHTS_FILE = "task.weights.h5"


class WeightsError(ValueError):
    """Weight files that are corrupt or do not fit the model."""


def _backbone_of(model):
    return getattr(model, "backbone", model)


def task_variables(model):
    """The classifier's variables outside its backbone (the head), by path."""
    backbone = _backbone_of(model)
    if backbone is model:
        return {}
    inside = {id(v) for v in backbone.weights}
    return {v.path: v for v in model.weights if id(v) not in inside}


def save_preset_weights(model, directory):
    """Writes `model.weights.h5` (the backbone, Keras format) and, for a
    classifier, `task.weights.h5` (every other variable, keyed by path)."""
    directory = Path(directory)
    _backbone_of(model).save_weights(directory / WEIGHTS_FILE)
    head = task_variables(model)
    if head:
        with h5py.File(directory / TASK_WEIGHTS_FILE, "w") as f:
            for path, variable in head.items():
                f.create_dataset(path, data=keras.ops.convert_to_numpy(variable.value))


def load_preset_weights(model, directory):
    """Loads a preset directory's weight files into `model` (same architecture).

    Both files are inspected first (`hdf5_safety.inspect_hdf5`): nothing is
    read from a file that reaches outside itself, and declared shapes are
    compared with the model's variables before any data is read.

    Raises:
        WeightsError: naming the file that is missing, unsafe, corrupt or
            does not fit.
    """
    directory = Path(directory)
    weights = directory / WEIGHTS_FILE
    backbone = _backbone_of(model)
    try:
        inspect_hdf5(weights, max_elements=_element_count(backbone.weights))
    except UnsafeHDF5Error as e:
        raise WeightsError(
            f"{weights} cannot be loaded into {backbone.name}: {e}"
        ) from None
    try:
        backbone.load_weights(weights)
    except Exception as e:  # h5py, Keras and OS errors alike
        reason = " ".join(str(e).split()) or type(e).__name__
        raise WeightsError(
            f"{weights} cannot be loaded into {backbone.name} "
            f"({type(e).__name__}: {reason}). The file is corrupt or belongs to "
            "another architecture: restore it or write the preset again with "
            "`save_to_preset`."
        ) from None
    head = task_variables(model)
    if not head:
        return
    path = directory / TASK_WEIGHTS_FILE
    if not path.is_file():
        warnings.warn(
            f"{directory} holds backbone weights only (no {TASK_WEIGHTS_FILE}): the "
            f"classifier's {sorted(head)} are freshly initialised.",
            stacklevel=5,
        )
        return
    try:
        stored, problems = read_datasets(
            path, {name: tuple(v.shape) for name, v in head.items()}
        )
    except UnsafeHDF5Error as e:
        raise WeightsError(str(e)) from None
    if problems:
        raise WeightsError(
            f"{path} does not fit the classifier described by task.json "
            f"({'; '.join(problems[:5])}). The preset's files disagree: write it again "
            "with `save_to_preset`, or load with an override (e.g. num_classes=...) "
            "that re-initialises the head."
        )
    for name, variable in head.items():
        variable.assign(stored[name].astype(variable.dtype))


def _element_count(variables):
    return sum(math.prod(int(d) for d in v.shape) for v in variables)


def transfer_by_path(source, target):
    """Copies every weight whose variable path and shape agree.

    Args:
        source: the model holding the weights.
        target: the model to fill (e.g. the same family with overrides).

    Returns:
        The paths of the target variables left as initialised.

    Raises:
        WeightsError: when no variable path corresponds (unrelated layouts).

    Example:
    >>> skipped = transfer_by_path(pretrained, model_with_new_head)
    """
    by_path = {v.path: v for v in source.weights}
    skipped, copied = [], 0
    for variable in target.weights:
        match = by_path.get(variable.path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(keras.ops.cast(match.value, variable.dtype))
            copied += 1
        else:
            skipped.append(variable.path)
    if target.weights and not copied:
        raise WeightsError(
            f"No weight of {source.name} corresponds to {target.name} (no variable "
            "path in common): the two models belong to different architectures or "
            "families. Build the target from the same family's preset."
        )
    return skipped
