"""Opens safetensors and npz checkpoints.

Each tensor becomes a `TensorRef` on a storage of its own, described by the
file's header alone, so that sizes are checked before any data is read.
"""

import contextlib
import json
import math
import zipfile
from pathlib import Path
from typing import IO, Any

import ml_dtypes
import numpy as np

from keras_spikformer.convert.checkpoint_errors import (
    CheckpointFormatError,
    MemoryBudget,
    UnsafeCheckpointError,
    corrupt,
)
from keras_spikformer.convert.torch_files import Storages, read_exact
from keras_spikformer.convert.torch_pickle import StorageRef, TensorRef

__all__ = ["open_npz", "open_safetensors"]

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
# The safetensors format's own limit on its JSON header.
_MAX_HEADER_BYTES = 100 * 2**20


def _contiguous(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> TensorRef:
    strides = tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))
    return TensorRef(StorageRef(name, np.dtype(dtype)), 0, shape, strides)


def _shape(value: Any, path: Path, name: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value
    ):
        raise corrupt(
            path, f"tensor {name!r} has shape {value!r}, not a list of counts"
        )
    return tuple(value)


def open_safetensors(
    path: Path, stack: contextlib.ExitStack, budget: MemoryBudget
) -> tuple[dict[str, TensorRef], Storages]:
    """Reads the JSON header of a safetensors file; data stays on disk."""
    f = stack.enter_context(open(path, "rb"))
    header_size = int.from_bytes(read_exact(f, 8), "little")
    if header_size > min(budget.file_size - 8, _MAX_HEADER_BYTES):
        raise corrupt(
            path,
            f"the safetensors header declares {header_size} bytes, more than the "
            f"file's {budget.file_size - 8} (or the format's 100 MiB limit)",
        )
    header = json.loads(read_exact(f, header_size))
    if not isinstance(header, dict):
        raise corrupt(path, "the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + header_size
    data_size = budget.file_size - data_start
    top, ranges = {}, {}
    for name, info in header.items():
        if (
            not isinstance(info, dict)
            or not {"dtype", "shape", "data_offsets"} <= info.keys()
        ):
            raise corrupt(path, f"header entry {name!r} lacks dtype/shape/data_offsets")
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointFormatError(
                f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}; "
                f"supported: {sorted(_SAFETENSORS_DTYPES)}."
            )
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        shape = _shape(info["shape"], path, name)
        offsets = info["data_offsets"]
        begin, end = offsets if _is_pair_of_counts(offsets) else (-1, -1)
        if (
            not 0 <= begin <= end <= data_size
            or end - begin != math.prod(shape) * dtype.itemsize
        ):
            raise CheckpointFormatError(
                f"{path}: tensor {name!r} ({info['dtype']}, shape {shape}) has data "
                f"offsets {offsets!r} that do not fit its size or the file's "
                f"{data_size} data bytes."
            )
        ranges[name] = (data_start + begin, end - begin)
        top[name] = _contiguous(name, dtype, shape)

    def read(key: str, dtype: np.dtype) -> np.ndarray:
        start, size = ranges[key]
        f.seek(start)
        return np.frombuffer(read_exact(f, size), dtype)

    sizes = {key: size for key, (_, size) in ranges.items()}
    return top, Storages(sizes, read, lambda key: f"data of tensor {key!r}")


def open_npz(
    path: Path, stack: contextlib.ExitStack, budget: MemoryBudget
) -> tuple[dict[str, Any], Storages]:
    """Reads the `.npy` headers of an npz file; data stays in the archive.

    Arrays named `sd/<name>` (this project's fixtures) are returned as a
    state dict under the key `"sd"`.
    """
    archive = stack.enter_context(zipfile.ZipFile(path))
    arrays, sizes, members = {}, {}, {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        with archive.open(info) as f:
            dtype, shape, header_bytes = _npy_header(f, path, name)
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != header_bytes + nbytes:
            raise corrupt(
                path,
                f"array {name!r} ({dtype}, shape {shape}) needs {nbytes} bytes, but "
                f"its member holds {info.file_size - header_bytes}",
            )
        arrays[name] = _contiguous(name, dtype, shape)
        sizes[name], members[name] = nbytes, info

    def read(key: str, dtype: np.dtype) -> np.ndarray:
        budget.check(members[key].file_size, f"array {key!r}")
        with archive.open(members[key]) as f:
            array = np.lib.format.read_array(f, allow_pickle=False)
        return array.reshape(-1)  # C order, a copy only for Fortran arrays

    weights = {n[3:]: a for n, a in arrays.items() if n.startswith("sd/")}
    if weights:
        others = {n: a for n, a in arrays.items() if not n.startswith("sd/")}
        arrays = {"sd": weights, **others}
    return arrays, Storages(sizes, read, lambda key: f"member {key}.npy")


def _npy_header(f: IO[bytes], path: Path, name: str) -> tuple[np.dtype, tuple, int]:
    """`(dtype, shape, header length)` of one `.npy` member."""
    start = f.read(6)
    if start != b"\x93NUMPY":
        raise corrupt(
            path,
            f"member {name}.npy is not a numpy array (it starts with {start!r}, not "
            "the .npy signature b'\\x93NUMPY'); save the weights with numpy.savez",
        )
    f.seek(0)
    version = np.lib.format.read_magic(f)
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:
        raise corrupt(path, f"array {name!r} has unsupported .npy version {version}")
    shape, _fortran_order, dtype = readers[version](f)
    if dtype.hasobject:
        raise UnsafeCheckpointError(
            f"Refused to load {path}: array {name!r} holds Python objects, which "
            "numpy stores as a pickle that could run code. The file was not loaded "
            "and no code from it ran. Save the weights as numeric arrays."
        )
    return dtype, tuple(shape), f.tell()


def _is_pair_of_counts(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )
