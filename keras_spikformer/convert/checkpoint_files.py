"""Reads PyTorch, safetensors and npz checkpoints into numpy, without torch.

PyTorch files (zip format of torch>=1.6 and the older legacy format) are read
with a restricted unpickler (see `torch_pickle`): a file that refers to any
Python global outside a small allow-list is refused before anything runs.
"""

import contextlib
import dataclasses
import functools
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import keras
import ml_dtypes
import numpy as np

from keras_spikformer.convert import torch_pickle
from keras_spikformer.convert.torch_pickle import (
    InertObject,
    StorageRef,
    TensorRef,
    TorchDtype,
    UnsafeCheckpointError,
)

__all__ = [
    "CheckpointContents",
    "CheckpointFormatError",
    "UnsafeCheckpointError",
    "read_checkpoint",
    "read_state_dict",
]

_PROGRESS_MIN_BYTES = 50 * 2**20
# Where training scripts keep the weights: timm, DeiT, plain DDP wrappers,
# and `sd/` in this project's npz fixtures.
_WEIGHT_KEYS = ("state_dict", "model", "module", "sd")
_EMA_KEYS = ("state_dict_ema", "model_ema")
_DDP_PREFIX = "module."
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
}

StorageReader = Callable[[str, np.dtype], np.ndarray]


class CheckpointFormatError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or holds no tensors."""


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
            holds no tensors, or has no EMA weights when `use_ema=True`.
        UnsafeCheckpointError: a PyTorch file refers to a Python global that
            a weights file does not need; nothing from it was run.

    Example:
    >>> contents = read_checkpoint("imagenet.pth.tar", use_ema=True)
    >>> contents.source_key, contents.stripped_prefix
    ('state_dict_ema', 'module.')
    """
    path = Path(path)
    fmt = _detect_format(path)
    with contextlib.ExitStack() as stack:
        with _format_errors(path, fmt):
            top, read_storage = _OPENERS[fmt](path, stack)
        source_key, weights = _select(top, use_ema, path)
        weights, prefix = _strip_prefix(weights)
        with _format_errors(path, fmt):
            state_dict = _materialize(weights, read_storage, progress)
    others = {str(k): v for k, v in top.items() if k != source_key}
    if source_key is None:
        others = {}
    metadata = {k: _plain(v) for k, v in others.items() if not _has_tensor(v)}
    extras = list(others)
    return CheckpointContents(state_dict, fmt, source_key, prefix, extras, metadata)


@contextlib.contextmanager
def _format_errors(path: Path, fmt: str) -> Iterator[None]:
    """Turns any parsing failure into one `CheckpointFormatError`."""
    try:
        yield
    except (CheckpointFormatError, UnsafeCheckpointError):
        raise
    except Exception as error:  # Anything an untrusted file can trigger.
        raise CheckpointFormatError(
            f"Could not read {path} as a {fmt} checkpoint ({type(error).__name__}: "
            f"{error}). The file is probably truncated or corrupt; download or "
            "save it again."
        ) from error


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
        with _format_errors(path, "zip"), zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(_is_pickle_record(name) for name in names):
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


def _is_pickle_record(name: str) -> bool:
    return name.endswith("/data.pkl") and name.count("/") == 1


def _open_torch_zip(
    path: Path, stack: contextlib.ExitStack
) -> tuple[Any, StorageReader]:
    archive = stack.enter_context(zipfile.ZipFile(path))
    (record,) = [name for name in archive.namelist() if _is_pickle_record(name)]
    prefix = record.removesuffix("data.pkl")
    if prefix + "byteorder" in archive.namelist():
        _check_little_endian(path, archive.read(prefix + "byteorder") == b"little")
    with archive.open(record) as f:
        top, _ = torch_pickle.load_pickle(f, str(path))

    def read_storage(key: str, dtype: np.dtype) -> np.ndarray:
        return np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype)

    return top, read_storage


def _open_torch_legacy(
    path: Path, stack: contextlib.ExitStack
) -> tuple[Any, StorageReader]:
    f = stack.enter_context(open(path, "rb"))
    magic, _ = torch_pickle.load_pickle(f, str(path))
    if magic != _LEGACY_MAGIC:
        raise CheckpointFormatError(
            f"{path} is a pickle but not a PyTorch checkpoint (no torch.save "
            "magic number)."
        )
    protocol, _ = torch_pickle.load_pickle(f, str(path))
    sys_info, _ = torch_pickle.load_pickle(f, str(path))
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"{path} has torch protocol {protocol}, not 1001.")
    _check_little_endian(path, sys_info.get("little_endian", True))
    top, storages = torch_pickle.load_pickle(f, str(path))
    keys, _ = torch_pickle.load_pickle(f, str(path))
    ranges = {}
    for key in keys:
        numel = int.from_bytes(_read_exact(f, 8), "little")
        ranges[key] = (f.tell(), numel * storages[key].dtype.itemsize)
        f.seek(ranges[key][1], os.SEEK_CUR)
    return top, _range_reader(f, ranges)


def _open_safetensors(
    path: Path, stack: contextlib.ExitStack
) -> tuple[Any, StorageReader]:
    f = stack.enter_context(open(path, "rb"))
    header_size = int.from_bytes(_read_exact(f, 8), "little")
    header = json.loads(_read_exact(f, header_size))
    header.pop("__metadata__", None)
    data_size = os.fstat(f.fileno()).st_size - 8 - header_size
    top, ranges = {}, {}
    for name, info in header.items():
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointFormatError(
                f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}; "
                f"supported: {sorted(_SAFETENSORS_DTYPES)}."
            )
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        if (
            not 0 <= begin <= end <= data_size
            or end - begin != math.prod(shape) * dtype.itemsize
        ):
            raise CheckpointFormatError(
                f"{path}: tensor {name!r} ({info['dtype']}, shape {shape}) has data "
                f"offsets {[begin, end]} that do not fit its size or the file's "
                f"{data_size} data bytes."
            )
        ranges[name] = (8 + header_size + begin, end - begin)
        strides = tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))
        top[name] = TensorRef(StorageRef(name, dtype), 0, shape, strides)
    return top, _range_reader(f, ranges)


def _open_npz(path: Path, stack: contextlib.ExitStack) -> tuple[Any, None]:
    npz = stack.enter_context(np.load(path, allow_pickle=False))
    arrays = {name: npz[name] for name in npz.files}
    weights = {n[3:]: a for n, a in arrays.items() if n.startswith("sd/")}
    if not weights:
        return arrays, None
    others = {n: a for n, a in arrays.items() if not n.startswith("sd/")}
    return {"sd": weights, **others}, None


_OPENERS = {
    "torch-zip": _open_torch_zip,
    "torch-legacy": _open_torch_legacy,
    "safetensors": _open_safetensors,
    "npz": _open_npz,
}


def _check_little_endian(path: Path, little_endian: bool) -> None:
    if not little_endian:
        raise CheckpointFormatError(
            f"{path} was saved on a big-endian machine, which is not supported; "
            "save it again on a little-endian one."
        )


def _read_exact(f: IO[bytes], size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise EOFError(
            f"needed {size} bytes at offset {f.tell() - len(data)}, got {len(data)}"
        )
    return data


def _range_reader(f: IO[bytes], ranges: dict[str, tuple[int, int]]) -> StorageReader:
    """Reads storage `key` from its `(offset, size)` byte range in `f`."""

    def read_storage(key: str, dtype: np.dtype) -> np.ndarray:
        offset, size = ranges[key]
        f.seek(offset)
        return np.frombuffer(_read_exact(f, size), dtype)

    return read_storage


def _is_tensor(value: Any) -> bool:
    return isinstance(value, (np.ndarray, TensorRef))


def _tensors(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if _is_tensor(v)}


def _select(top: Any, use_ema: bool, path: Path) -> tuple[str | None, dict[str, Any]]:
    """Finds the weights in a (possibly training) checkpoint."""
    if not isinstance(top, dict):
        raise CheckpointFormatError(
            f"{path} holds a {type(top).__name__}, not a dict of tensors."
        )
    for key in _EMA_KEYS if use_ema else _WEIGHT_KEYS:
        if weights := _tensors(top.get(key)):
            return key, weights
    keys = sorted(map(str, top))
    if use_ema:
        raise CheckpointFormatError(
            f"{path} has no EMA weights (looked for {list(_EMA_KEYS)}); its "
            f"top-level keys are {keys}. Pass use_ema=False for the regular weights."
        )
    if top and all(_is_tensor(v) for v in top.values()):
        return None, top
    raise CheckpointFormatError(
        f"{path} holds no tensors: expected a dict of tensors, or one under "
        f"{list(_WEIGHT_KEYS)}, but its top-level keys are {keys}."
    )


def _strip_prefix(weights: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    if not all(name.startswith(_DDP_PREFIX) for name in weights):
        return weights, None
    return {n.removeprefix(_DDP_PREFIX): v for n, v in weights.items()}, _DDP_PREFIX


def _materialize(
    weights: dict[str, Any], read_storage: StorageReader | None, progress: bool
) -> dict[str, np.ndarray]:
    """Builds every array, reading each storage once (in storage order)."""
    if read_storage:
        read_storage = functools.lru_cache(maxsize=1)(read_storage)
    order = sorted(weights, key=lambda n: _storage_key(weights[n]))
    total = sum(leaf.nbytes for leaf in weights.values())
    bar = None
    if progress and total > _PROGRESS_MIN_BYTES:
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


def _has_tensor(value: Any) -> bool:
    if _is_tensor(value):
        return True
    if isinstance(value, dict):
        value = list(value.values())
    elif isinstance(value, InertObject):
        value = [value.args, value.state]
    return isinstance(value, (list, tuple)) and any(map(_has_tensor, value))


def _plain(value: Any) -> Any:
    """Converts unpickled metadata to plain Python data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map(_plain, value))
    if isinstance(value, InertObject):
        if isinstance(value.state, dict) and not value.args:
            return _plain(value.state)
        return {"args": _plain(value.args), "state": _plain(value.state)}
    if isinstance(value, TorchDtype):
        return str(value)
    return value
