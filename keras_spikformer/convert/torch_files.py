"""Opens PyTorch checkpoints (zip format of torch>=1.6, older legacy format).

Both hold a pickle whose tensors refer to raw storages kept beside it. The
openers read the pickle with the restricted unpickler (`torch_pickle`), after
bounding the memory it needs, and return the storages' sizes without reading
them, so that every tensor can be checked before anything is allocated.
"""

import contextlib
import dataclasses
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from keras_spikformer.convert import torch_pickle
from keras_spikformer.convert.checkpoint_errors import (
    CheckpointFormatError,
    MemoryBudget,
    corrupt,
)

__all__ = [
    "Storages",
    "is_pickle_record",
    "open_torch_legacy",
    "open_torch_zip",
    "read_exact",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclasses.dataclass
class Storages:
    """The raw storages of a checkpoint: sizes known, bytes read on demand.

    Attributes:
        sizes: storage key -> size in bytes.
        read: `read(key, dtype)` returns the whole storage as a 1-D array.
        location: `location(key)` says where the storage should be, for
            messages.
    """

    sizes: dict[str, int]
    read: Callable[[str, np.dtype], np.ndarray]
    location: Callable[[str], str] = str


def is_pickle_record(name: str) -> bool:
    return name.endswith("/data.pkl") and name.count("/") == 1


def _load_pickle(f: IO[bytes], path: Path, budget: MemoryBudget) -> tuple[Any, dict]:
    """Unpickles after bounding the memory it takes (see `unpickled_size`)."""
    budget.check(
        torch_pickle.unpickled_size(f),
        "unpickling its pickle",
        "A weights file's pickle holds names and references to tensors, not this "
        "many objects; save the state_dict again with torch.save",
    )
    return torch_pickle.load_pickle(f, str(path))


def open_torch_zip(
    path: Path, stack: contextlib.ExitStack, budget: MemoryBudget
) -> tuple[Any, Storages]:
    """Reads the pickle of a zip checkpoint; storages stay in the archive."""
    archive = stack.enter_context(zipfile.ZipFile(path))
    infos = {info.filename: info for info in archive.infolist()}
    records = [name for name in infos if is_pickle_record(name)]
    if len(records) != 1:
        raise corrupt(
            path,
            f"{len(records)} pickle records ({', '.join(records[:3])}); a torch "
            "zip checkpoint has exactly one <name>/data.pkl",
        )
    prefix = records[0].removesuffix("data.pkl")
    if prefix + "byteorder" in infos:
        with archive.open(prefix + "byteorder") as f:
            _check_little_endian(path, f.read(16) == b"little")
    budget.check(infos[records[0]].file_size, f"the pickle {records[0]}")
    with archive.open(records[0]) as f:
        top, storages = _load_pickle(f, path, budget)
    sizes = {
        key: infos[f"{prefix}data/{key}"].file_size
        for key in storages
        if f"{prefix}data/{key}" in infos
    }

    def read(key: str, dtype: np.dtype) -> np.ndarray:
        budget.check(sizes[key], f"storage {key!r}")
        data = archive.read(f"{prefix}data/{key}")
        if len(data) != sizes[key]:
            raise corrupt(path, f"storage {key!r} is shorter than the archive says")
        return np.frombuffer(data, dtype)

    return top, Storages(sizes, read, lambda key: f"archive record {prefix}data/{key}")


def open_torch_legacy(
    path: Path, stack: contextlib.ExitStack, budget: MemoryBudget
) -> tuple[Any, Storages]:
    """Reads the pickles of a legacy checkpoint and finds its storages."""
    f = stack.enter_context(open(path, "rb"))
    file_size = os.fstat(f.fileno()).st_size

    def _load() -> tuple[Any, dict]:
        return _load_pickle(f, path, budget)

    magic, _ = _load()
    if magic != _LEGACY_MAGIC:
        raise CheckpointFormatError(
            f"{path} is a pickle but not a PyTorch checkpoint (no torch.save "
            "magic number)."
        )
    protocol, _ = _load()
    if protocol != _LEGACY_PROTOCOL:
        raise corrupt(path, f"torch protocol {protocol!r}, expected 1001")
    sys_info, _ = _load()
    if not isinstance(sys_info, dict):
        raise corrupt(path, f"system info is a {type(sys_info).__name__}, not a dict")
    _check_little_endian(path, sys_info.get("little_endian", True))
    top, storages = _load()
    keys, _ = _load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise corrupt(path, "the list of storage keys after the pickle is malformed")
    ranges = {}
    for key in keys:
        if key not in storages:
            raise corrupt(
                path, f"storage {key!r} follows the pickle, which never uses it"
            )
        numel = int.from_bytes(read_exact(f, 8), "little")
        start, size = f.tell(), numel * storages[key].dtype.itemsize
        if start + size > file_size:
            raise corrupt(
                path,
                f"storage {key!r} declares {numel} elements ({size} bytes) at byte "
                f"{start}, past the end of the {file_size}-byte file",
            )
        ranges[key] = (start, size)
        f.seek(size, os.SEEK_CUR)

    def read(key: str, dtype: np.dtype) -> np.ndarray:
        start, size = ranges[key]
        f.seek(start)
        return np.frombuffer(read_exact(f, size), dtype)

    sizes = {key: size for key, (_, size) in ranges.items()}
    return top, Storages(sizes, read, lambda key: f"storage {key!r} after the pickle")


def _check_little_endian(path: Path, little_endian: bool) -> None:
    if not little_endian:
        raise CheckpointFormatError(
            f"{path} was saved on a big-endian machine, which is not supported; "
            "save it again on a little-endian one."
        )


def read_exact(f: IO[bytes], size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise EOFError(
            f"needed {size} bytes at offset {f.tell() - len(data)}, got {len(data)}"
        )
    return data
