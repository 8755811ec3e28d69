"""Event records: the event dict, its checks, the known datasets' constants, file checks."""

import os
import stat

import numpy as np

from keras_spikformer.data import event_limits as limits
from keras_spikformer.data.event_limits import EventFileError, check_event_values

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
    check_event_values(t, x, y)
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


def check_event_file(path):
    """The size of a regular, non-empty event file, or a clear `EventFileError`.

    Devices, FIFOs and directories are refused without being opened (a FIFO
    would block, `/dev/zero` would never end).

    Args:
        path: the file (symlinks are followed).

    Returns:
        The size in bytes.

    Example:
        >>> check_event_file("cat_1.aedat")  # doctest: +SKIP
        2817096
    """
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except OSError:
        raise EventFileError(f"Event file not found: {path!r}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise EventFileError(
            f"Event file {path!r} is not a regular file (a directory, device or "
            "FIFO); point to the recording itself."
        )
    if not info.st_size:
        raise EventFileError(
            f"Event file {path!r} is empty (0 bytes); re-download or re-extract it."
        )
    return info.st_size


def read_bytes(path):
    """The whole file, or an `EventFileError` for a missing, empty or huge one.

    AEDAT records take 8 bytes per event: files above
    `MAX_EVENTS_PER_FILE` events (plus 1 MiB of headers) are refused unread.
    """
    path = os.fspath(path)
    size = check_event_file(path)
    budget = limits.MAX_EVENTS_PER_FILE
    if size > 8 * budget + 2**20:
        raise EventFileError(
            f"Event file {path!r} is {size:,} bytes, more than the budget of "
            f"{budget:,} events of 8 bytes. Split the recording, or "
            "raise keras_spikformer.data.event_limits.MAX_EVENTS_PER_FILE."
        )
    with open(path, "rb") as f:
        return f.read()
