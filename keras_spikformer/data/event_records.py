"""Event records: the event dict, its checks, the known datasets' constants, `.npz` files."""

import os

import numpy as np

DVS128_SENSOR_SIZE = (128, 128)
# CIFAR10-DVS class folders, in label order (as CIFAR-10).
CIFAR10DVS_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Labels 1..11 of the DVS128 Gesture CSV files, in order (stored as 0..10).
DVSGESTURE_CLASS_NAMES = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)
ORIENTATIONS = ("spikingjelly", "dat2mat", "raw")


class EventFileError(ValueError):
    """An event or label file is missing, malformed or holds no events."""


def make_events(t, x, y, p):
    """Builds a validated event dict with the standard dtypes.

    Args:
        t: timestamps in microseconds (integers).
        x: pixel columns (non-negative integers).
        y: pixel rows (non-negative integers).
        p: polarities, each 0 or 1 (booleans accepted).

    Returns:
        A dict `{"t": int64, "x": int32, "y": int32, "p": uint8}` of 1-D arrays.

    Example:
        >>> ev = make_events([0, 5], [1, 2], [3, 4], [1, 0])
        >>> ev["t"].dtype, ev["p"].tolist()
        (dtype('int64'), [1, 0])
    """
    arrays = [np.asarray(a).reshape(-1) for a in (t, x, y, p)]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ValueError(
            "Events need t, x, y and p of the same length; got lengths "
            f"{[a.size for a in arrays]}. Pass one value per event in each."
        )
    t, x, y, p = arrays
    for name, a in (("t", t), ("x", x), ("y", y), ("p", p)):
        if a.size and a.dtype.kind not in "iub":
            raise ValueError(
                f"Event field `{name}` must hold integers, got dtype {a.dtype}. "
                "Convert timestamps to integer microseconds first."
            )
    if x.size and (x.min() < 0 or y.min() < 0):
        raise ValueError("Event coordinates x and y must be non-negative.")
    if p.size and not np.isin(p, (0, 1)).all():
        raise ValueError(
            f"Event polarity `p` must be 0 or 1, got values {np.unique(p)[:5]}. "
            "Map OFF to 0 and ON to 1 (e.g. `p = (p > 0)`)."
        )
    return {
        "t": t.astype(np.int64),
        "x": x.astype(np.int32),
        "y": y.astype(np.int32),
        "p": p.astype(np.uint8),
    }


def num_events(events):
    """Returns the number of events in an event dict."""
    return int(np.asarray(events["t"]).size)


def read_bytes(path):
    """The whole file, or an `EventFileError` for a missing or empty one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EventFileError(f"Event file not found: {path!r}.")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise EventFileError(
            f"Event file {path!r} is empty (0 bytes); re-download or re-extract it."
        )
    return data


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
    read_bytes(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("t", "x", "y", "p") if k not in z.files]
            if missing:
                raise EventFileError(
                    f"Event file {path!r} lacks arrays {missing}; an event .npz "
                    "needs `t`, `x`, `y` and `p` (see write_npz_events)."
                )
            arrays = {k: z[k] for k in ("t", "x", "y", "p")}
            sensor = z["sensor_size"] if "sensor_size" in z.files else None
    except EventFileError:
        raise
    except Exception as e:  # zipfile / format errors
        raise EventFileError(f"Cannot read {path!r} as .npz: {e}") from e
    try:
        events = make_events(*(arrays[k] for k in ("t", "x", "y", "p")))
    except ValueError as e:
        raise EventFileError(f"Bad events in {path!r}: {e}") from None
    if not num_events(events):
        raise EventFileError(f"No events in {path!r}: its arrays are empty.")
    if sensor is not None:
        events["sensor_size"] = tuple(int(v) for v in np.asarray(sensor).ravel())
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
    ev = make_events(*(events[k] for k in ("t", "x", "y", "p")))
    if sensor_size is not None:
        ev["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    np.savez(path, **ev)
    return path
