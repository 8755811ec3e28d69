"""Reads PyTorch, safetensors and npz checkpoints into numpy, without torch.

PyTorch files (zip format of torch>=1.6 and the older legacy format) are read
with a restricted unpickler (see `torch_pickle`): a file that refers to any
Python global outside a small allow-list is refused before anything runs.

Memory stays bounded by the file's size: the pickle's cost is estimated before
it is unpickled, and every tensor's shape, strides and offset are checked
against its storage (`tensor_layout`) before any array is allocated. Broken
files raise `CheckpointFormatError("corrupt checkpoint: ...")`.

The formats are opened by `torch_files` and `array_files`; `state_dict_selection`
finds the weights inside training checkpoints.
"""

import contextlib
import dataclasses
import functools
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from keras_spikformer.convert.array_files import open_npz, open_safetensors
from keras_spikformer.convert.checkpoint_errors import (
    CheckpointFormatError,
    MemoryBudget,
    UnsafeCheckpointError,
    corrupt,
    format_errors,
)
from keras_spikformer.convert.state_dict_selection import (
    plain_metadata,
    select_weights,
    strip_prefix,
)
from keras_spikformer.convert.tensor_layout import check_layout
from keras_spikformer.convert.torch_files import (
    Storages,
    is_pickle_record,
    open_torch_legacy,
    open_torch_zip,
)
from keras_spikformer.convert.torch_pickle import TensorRef

__all__ = [
    "CheckpointContents",
    "CheckpointFormatError",
    "UnsafeCheckpointError",
    "read_checkpoint",
    "read_state_dict",
]

_PROGRESS_MIN_BYTES = 50 * 2**20
_OPENERS = {
    "torch-zip": open_torch_zip,
    "torch-legacy": open_torch_legacy,
    "safetensors": open_safetensors,
    "npz": open_npz,
}


@dataclasses.dataclass
class CheckpointContents:
    """What `read_checkpoint` found in a file.

    Attributes:
        state_dict: parameter name -> C-contiguous numpy array.
        format: `"torch-zip"`, `"torch-legacy"`, `"safetensors"` or `"npz"`.
        source_key: top-level key the weights came from (e.g.
            `"state_dict_ema"`), or None when the file is the state dict.
        stripped_prefix: prefix removed from every name (`"module."`), or None.
        extras: the other top-level keys, ignored (e.g. `"optimizer"`).
        metadata: the extras that hold no tensors, as plain Python data
            (`argparse.Namespace` arguments become dicts).
    """

    state_dict: dict[str, np.ndarray]
    format: str
    source_key: str | None = None
    stripped_prefix: str | None = None
    extras: list[str] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_state_dict(
    path: str | os.PathLike, *, use_ema: bool = False, progress: bool = True
) -> dict[str, np.ndarray]:
    """Reads the weights of a checkpoint as numpy arrays, without torch.

    Args:
        path: a `.pth`/`.pth.tar`/`.pt`/`.bin` PyTorch file, `.safetensors`
            or `.npz` file; the format is recognised from the content.
        use_ema: bool, default False. Read the EMA weights
            (`state_dict_ema`) of a training checkpoint instead.
        progress: bool, default True. Show a progress bar for files with
            more than 50 MB of tensors.

    Returns:
        A dict of parameter names to arrays, any `module.` prefix removed.

    Example:
    >>> weights = read_state_dict("spikformer_cifar10.pth.tar")
    >>> weights["head.weight"].shape
    (10, 384)
    """
    return read_checkpoint(path, use_ema=use_ema, progress=progress).state_dict


def read_checkpoint(
    path: str | os.PathLike, *, use_ema: bool = False, progress: bool = True
) -> CheckpointContents:
    """Reads a checkpoint's weights and says where in the file they were.

    Args: as in `read_state_dict`.

    Returns:
        A `CheckpointContents`.

    Raises:
        CheckpointFormatError: the file is missing, empty, truncated, corrupt,
            needs more memory than its size allows, holds no tensors, or has
            no EMA weights when `use_ema=True`.
        UnsafeCheckpointError: a PyTorch file refers to a Python global that
            a weights file does not need; nothing from it was run.

    Example:
    >>> contents = read_checkpoint("imagenet.pth.tar", use_ema=True)
    >>> contents.source_key, contents.stripped_prefix
    ('state_dict_ema', 'module.')
    """
    path = Path(path)
    fmt = _detect_format(path)
    budget = MemoryBudget(path)
    with contextlib.ExitStack() as stack, format_errors(path):
        top, storages = _OPENERS[fmt](path, stack, budget)
        source_key, weights = select_weights(top, use_ema, path)
        weights, prefix = strip_prefix(weights)
        _check_tensors(weights, storages, budget, path)
        state_dict = _materialize(weights, storages, progress)
        others = {str(k): v for k, v in top.items() if k != source_key}
        if source_key is None:
            others = {}
        metadata = plain_metadata(others, path)
    return CheckpointContents(
        state_dict, fmt, source_key, prefix, list(others), metadata
    )


def _detect_format(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as error:
        raise CheckpointFormatError(
            f"Cannot open checkpoint {path}: {error.strerror}."
        ) from error
    if not head:
        raise CheckpointFormatError(f"Checkpoint {path} is empty (0 bytes).")
    if head.startswith(b"PK"):
        with format_errors(path), zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(is_pickle_record(name) for name in names):
            return "torch-zip"
        if names and all(name.endswith(".npy") for name in names):
            return "npz"
    elif head.startswith(b"\x80"):
        return "torch-legacy"
    elif head[8:9] == b"{":
        return "safetensors"
    raise CheckpointFormatError(
        f"{path} is not a PyTorch (.pth, .pt, .bin), safetensors or npz "
        f"checkpoint: it starts with {head!r}."
    )


def _check_tensors(
    weights: dict[str, Any], storages: Storages, budget: MemoryBudget, path: Path
) -> None:
    """Checks every tensor against its storage and the memory budget, before
    anything is read."""
    for name, ref in weights.items():
        if not isinstance(ref, TensorRef):
            continue
        if ref.storage.key not in storages.sizes:
            raise corrupt(
                path,
                f"tensor {name!r} uses storage {ref.storage.key!r}, but the file "
                f"has no {storages.location(ref.storage.key)}",
            )
        check_layout(name, ref, storages.sizes[ref.storage.key], path)
    total = sum(ref.nbytes for ref in weights.values())
    budget.check(total, f"its {len(weights)} tensors")


def _materialize(
    weights: dict[str, Any], storages: Storages, progress: bool
) -> dict[str, np.ndarray]:
    """Builds every array, reading each storage once (in storage order)."""
    read_storage = functools.lru_cache(maxsize=1)(storages.read)
    order = sorted(weights, key=lambda n: _storage_key(weights[n]))
    total = sum(leaf.nbytes for leaf in weights.values())
    bar = None
    if progress and total > _PROGRESS_MIN_BYTES:
        import keras  # only for the progress bar

        bar = keras.utils.Progbar(len(order), unit_name="tensor")
    arrays = {}
    for step, name in enumerate(order, 1):
        leaf = weights[name]
        if isinstance(leaf, TensorRef):
            leaf = leaf.build(read_storage(leaf.storage.key, leaf.storage.dtype))
        arrays[name] = np.asarray(leaf, order="C")
        if bar:
            bar.update(step)
    return {name: arrays[name] for name in weights}


def _storage_key(leaf: Any) -> str:
    return leaf.storage.key if isinstance(leaf, TensorRef) else ""
