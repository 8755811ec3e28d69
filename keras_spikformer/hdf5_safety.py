"""Inspecting HDF5 weight files before anything is read from them.

A preset from a hub is untrusted. HDF5 can point outside its own file
(external raw storage, virtual datasets, external and soft links: a crafted
file can make `/etc/passwd`, `/proc/self/environ` or a FIFO the bytes of a
kernel) and can declare datasets far larger than the bytes it stores (a
compressed fill value of 40000 x 10000 floats in 5 KB). `inspect_hdf5` walks
the file's structure without reading any data and refuses all of that, so a
caller can compare the declared shapes with the model's variables first.
"""

import math
import os
import stat
from pathlib import Path

import h5py
import numpy as np

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class UnsafeHDF5Error(ValueError):
    """An HDF5 file that reaches outside itself or is not plain numeric data."""


def inspect_hdf5(path, max_elements=None):
    """The datasets of an HDF5 file as `{name: (shape, dtype)}`, read from its structure.

    No dataset's data is read. The file must be a regular file, and every
    object in it a group or a numeric dataset stored inside the file.

    Args:
        path: str or path of the file.
        max_elements: int, optional; the most elements all datasets together
            may declare (e.g. the element count of the model that will load
            the file). Larger declarations are refused before any read.

    Returns:
        dict mapping each dataset's path in the file to `(shape, numpy dtype)`.

    Raises:
        UnsafeHDF5Error: a file that is not regular (FIFO, device), not HDF5,
            with external storage, a virtual dataset, an external or soft
            link, a non-numeric dataset, or more declared elements than allowed.

    Example:
    >>> inspect_hdf5("preset/task.weights.h5")
    {'head/kernel': ((384, 10), dtype('float32')), ...}
    """
    path = Path(path)
    check_regular_file(path, UnsafeHDF5Error)
    with open(path, "rb") as f:
        if f.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
            raise UnsafeHDF5Error(
                f"{path} is corrupt (not an HDF5 file: its signature is missing); restore it "
                "or write the preset again with `save_to_preset`."
            )
    found = {}
    try:
        with h5py.File(path, "r") as f:
            _walk(f, path, found)
    except UnsafeHDF5Error:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError...
        raise UnsafeHDF5Error(
            f"{path} is corrupt ({type(e).__name__}: {e}); restore it or write the "
            "preset again with `save_to_preset`."
        ) from None
    declared = sum(math.prod(shape) for shape, _ in found.values())
    if max_elements is not None and declared > max_elements:
        raise UnsafeHDF5Error(
            f"{path} declares {declared:,} weight values, more than the "
            f"{max_elements:,} of the model that loads it: the file does not belong "
            "to this model (or is crafted to exhaust memory). Nothing was read."
        )
    return found


def _walk(group, path, found):
    for name in group:
        link = group.get(name, getlink=True)
        where = f"{group.name.rstrip('/')}/{name}".lstrip("/")
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            raise UnsafeHDF5Error(
                f"{path}: {where!r} is an HDF5 {type(link).__name__}, which can "
                "read other files; weight files of keras-spikformer hold none. "
                "Refusing the file: write it again with `save_to_preset`."
            )
        item = group[name]
        if isinstance(item, h5py.Group):
            _walk(item, path, found)
        elif isinstance(item, h5py.Dataset):
            _check_dataset(item, where, path)
            found[where] = (tuple(int(d) for d in item.shape), item.dtype)
        else:
            raise UnsafeHDF5Error(
                f"{path}: {where!r} is a {type(item).__name__}, not a group or a "
                "dataset. Refusing the file."
            )


def _check_dataset(dataset, where, path):
    if dataset.is_virtual or dataset.external:
        kind = "a virtual dataset" if dataset.is_virtual else "external raw storage"
        raise UnsafeHDF5Error(
            f"{path}: {where!r} uses {kind}, which reads bytes from other files "
            "(e.g. /etc/passwd). Weight files of keras-spikformer never do; "
            "refusing the file. Write it again with `save_to_preset`."
        )
    kind = dataset.dtype.kind
    if kind not in "fiub" or dataset.dtype.fields is not None:
        raise UnsafeHDF5Error(
            f"{path}: {where!r} holds {dataset.dtype} data, not numbers. Refusing "
            "the file: write it again with `save_to_preset`."
        )


def read_datasets(path, wanted):
    """Reads the datasets named in `wanted` after checking their declared shapes.

    Args:
        path: an HDF5 file already accepted by `inspect_hdf5`.
        wanted: dict `{name: expected shape}`; other datasets are not read.

    Returns:
        `(arrays, problems)`: the arrays that fit, and one line per dataset
        that is missing or has another shape.

    Example:
    >>> arrays, problems = read_datasets(path, {"head/kernel": (384, 10)})
    """
    found = inspect_hdf5(path)
    problems = []
    for name, shape in wanted.items():
        if name not in found:
            problems.append(f"{name}: not in the file")
        elif found[name][0] != tuple(shape):
            problems.append(f"{name}: file {list(found[name][0])}, model {list(shape)}")
    if problems:
        return {}, problems
    with h5py.File(path, "r") as f:
        arrays = {name: np.asarray(f[name]) for name in wanted}
    return arrays, []


def check_regular_file(path, error=ValueError):
    """Refuses a path that is not a regular file (a FIFO, a device, a directory).

    Symbolic links are followed; what they point to must be a regular file.

    Raises:
        `error`: naming the path and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise error(f"{path} cannot be read ({e.strerror}).") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "not a regular file"
        )
        raise error(
            f"{path} is {kind}, not a regular file: refusing to read it (a crafted "
            "preset can name /dev/zero or a FIFO). Replace it with the real file."
        )
