"""Event recordings as `.npz` files: arrays `t`, `x`, `y`, `p`, optional `sensor_size`.

Files are untrusted: their array headers (shape, dtype) are read and checked
against `event_limits` before any array is, so a small compressed file that
declares 10^8 events or a 12800x12800 sensor is refused without allocating.
"""

import os
import zipfile

import numpy as np

from keras_spikformer.data import event_limits as limits
from keras_spikformer.data.event_records import (
    EventFileError,
    check_event_file,
    make_events,
    num_events,
)

_FIELDS = ("t", "x", "y", "p")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _check_archive(path):
    """Refuses anything but a regular file holding a zip archive."""
    check_event_file(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] in _ZIP_MAGIC:
        return
    if head.startswith(b"\x93NUMPY"):
        kind = "a single .npy array"
    elif head[:1].isascii() and head.isascii():
        kind = f"text ({head!r}...)"
    else:
        kind = f"bytes {head!r}"
    raise EventFileError(
        f"Event file {path!r} is not an .npz archive: it holds {kind}. An event "
        ".npz is a zip of arrays `t`, `x`, `y`, `p`; write it with "
        "events.write_npz_events or np.savez(path, t=..., x=..., y=..., p=...)."
    )


def _read_header(member):
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)


def npz_array_headers(path):
    """`{name: (shape, dtype)}` of the arrays of an `.npz`, read without the data.

    Args:
        path: the `.npz` file.

    Returns:
        Dict from array name (without `.npy`) to `(shape tuple, numpy dtype)`.

    Example:
        >>> npz_array_headers("s.npz")["t"]  # doctest: +SKIP
        ((100,), dtype('int64'))
    """
    path = os.fspath(path)
    _check_archive(path)
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    shape, _, dtype = _read_header(member)
                headers[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise EventFileError(
            f"Cannot read {path!r} as .npz: {e}. Re-write it with "
            "events.write_npz_events."
        ) from None
    return headers


def _declared_count(path, headers):
    missing = [k for k in _FIELDS if k not in headers]
    if missing:
        raise EventFileError(
            f"Event file {path!r} lacks arrays {missing}; an event .npz "
            "needs `t`, `x`, `y` and `p` (see write_npz_events)."
        )
    counts = {}
    for k in _FIELDS:
        shape, dtype = headers[k]
        counts[k] = int(np.prod(shape, dtype=object))  # Python ints: no overflow
        if counts[k] and dtype.kind not in "iub":
            raise EventFileError(
                f"Bad events in {path!r}: event field `{k}` must hold integers, got "
                f"dtype {dtype}. Convert timestamps to integer microseconds first."
            )
    limits.check_event_count(max(counts.values()), path)
    if len(set(counts.values())) != 1:
        raise EventFileError(
            f"Bad events in {path!r}: t, x, y and p need the same length; got "
            f"lengths {list(counts.values())}. Store one value per event in each."
        )
    return counts["t"]


def read_npz_sensor_size(path, headers=None):
    """The `sensor_size` stored in an event `.npz` (checked), or `None`.

    Args:
        path: the `.npz` file.
        headers: its `npz_array_headers`, if already read.

    Returns:
        `(H, W)` tuple of ints, or `None` when the file stores none.

    Example:
        >>> read_npz_sensor_size("s.npz")  # doctest: +SKIP
        (128, 128)
    """
    path = os.fspath(path)
    headers = npz_array_headers(path) if headers is None else headers
    if "sensor_size" not in headers:
        return None
    shape, dtype = headers["sensor_size"]
    if int(np.prod(shape, dtype=object)) != 2 or dtype.kind not in "iu":
        raise EventFileError(
            f"sensor_size in {path!r} must be two positive integers (H, W), got an "
            f"array of shape {shape} and dtype {dtype}. Store the sensor's height "
            "and width only, e.g. sensor_size=(128, 128)."
        )
    with np.load(path, allow_pickle=False) as z:
        stored = z["sensor_size"]
    return limits.check_sensor_size(stored, path)


def read_npz_events(path):
    """Reads events saved as `.npz` with arrays `t`, `x`, `y`, `p`.

    Args:
        path: path of the `.npz` file (see `write_npz_events`).

    Returns:
        Event dict; `"sensor_size"` (`(H, W)` tuple) is added when stored.

    Example:
        >>> ev = read_npz_events("sample.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    headers = npz_array_headers(path)
    if not _declared_count(path, headers):
        raise EventFileError(f"No events in {path!r}: its arrays are empty.")
    sensor = read_npz_sensor_size(path, headers)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in _FIELDS]
    except Exception as e:  # zipfile / format errors in the data
        raise EventFileError(f"Cannot read {path!r} as .npz: {e}") from None
    try:
        events = make_events(*arrays)
    except ValueError as e:
        raise EventFileError(f"Bad events in {path!r}: {e}") from None
    if not num_events(events):
        raise EventFileError(f"No events in {path!r}: its arrays are empty.")
    if sensor is not None:
        events["sensor_size"] = sensor
    return events


def write_npz_events(path, events, sensor_size=None):
    """Saves events as `.npz` (arrays `t`, `x`, `y`, `p`, opt. `sensor_size`).

    Args:
        path: output path (`.npz` is appended by numpy if missing).
        events: event dict or anything with `t`, `x`, `y`, `p` fields.
        sensor_size: optional `(H, W)` stored alongside.

    Returns:
        The path written.

    Example:
        >>> write_npz_events("s.npz", make_events([0], [1], [2], [1]), (4, 4))
        's.npz'
    """
    ev = make_events(*(events[k] for k in _FIELDS))
    if sensor_size is not None:
        ev["sensor_size"] = np.asarray(
            limits.check_sensor_size(sensor_size, what="sensor_size"), dtype=np.int64
        )
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    np.savez(path, **ev)
    return path
