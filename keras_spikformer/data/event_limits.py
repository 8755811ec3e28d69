"""Memory and value bounds for untrusted event files, checked before anything is allocated.

An event file is small on disk but declares what it costs: a `.npz` names
its array shapes in their headers (a compressed file of 1.6 MB may hold
10^8 events) and its `sensor_size` fixes the frame tensor
(`[T, H, W, 2]`). Both are checked against the budgets below before the
arrays are read or the frames built, with an error naming the file.

The budgets are module attributes; raise them for bigger recordings, e.g.
`keras_spikformer.data.event_limits.MAX_EVENTS_PER_FILE = 10**8`.
"""

import numpy as np


class EventFileError(ValueError):
    """An event or label file is missing, malformed or holds no events."""


# Events one file may hold. Reading and integrating costs about 60 bytes per
# event (the arrays, a sort, the frame index), so 2**25 events stay near 2 GB.
MAX_EVENTS_PER_FILE = 2**25
# Values of one frame tensor `T * H * W * 2`; the integration holds them as
# int64 counts and float32 frames (12 bytes each): 2**27 values are 1.5 GB.
MAX_FRAME_VALUES = 2**27
# Largest |timestamp| in microseconds (about 285 years): differences of
# timestamps, and the time split's window arithmetic, stay exact in int64.
MAX_ABS_TIMESTAMP = 2**53
# Largest pixel coordinate: x and y are stored as int32.
MAX_COORDINATE = np.iinfo(np.int32).max


def _where(source):
    return f" in {source!r}" if source else ""


def check_sensor_size(sensor_size, source=None, what="sensor_size"):
    """`(H, W)` as two positive Python ints, or a clear `EventFileError`.

    Args:
        sensor_size: anything holding two integers, e.g. `(128, 128)` or a
            stored numpy array.
        source: the file (or option) named in the error.
        what: the name of the value in the error.

    Returns:
        `(H, W)` tuple of ints.

    Example:
        >>> check_sensor_size(np.array([128, 128]))
        (128, 128)
    """
    values = np.asarray(sensor_size)
    if (
        values.ndim > 1
        or values.size != 2
        or values.dtype.kind not in "iu"
        or (values < 1).any()
    ):
        shown = values.tolist() if values.size < 10 else f"{values.size} values"
        raise EventFileError(
            f"{what}{_where(source)} must be two positive integers (H, W), got "
            f"{shown}. Store or pass the sensor's height and width only, e.g. "
            "(128, 128); a channel count is not part of it."
        )
    return int(values[0]), int(values[1])


def check_event_count(count, source=None):
    """Refuses files declaring more than `MAX_EVENTS_PER_FILE` events.

    Args:
        count: the number of events the file declares.
        source: the file named in the error.

    Example:
        >>> check_event_count(10**6, "rec.npz")
    """
    if count > MAX_EVENTS_PER_FILE:
        raise EventFileError(
            f"Too many events{_where(source)}: it declares {count:,} events, "
            f"above the budget of {MAX_EVENTS_PER_FILE:,} per file (about 60 bytes "
            "each while integrating). Split the recording into shorter files, or "
            "raise keras_spikformer.data.event_limits.MAX_EVENTS_PER_FILE if the "
            "memory is there."
        )


def check_frame_budget(num_frames, sensor_size, source=None):
    """Refuses frame tensors `[T, H, W, 2]` above `MAX_FRAME_VALUES` values.

    Args:
        num_frames: frames per example `T`.
        sensor_size: `(H, W)`.
        source: the file named in the error.

    Example:
        >>> check_frame_budget(16, (128, 128))
    """
    h, w = sensor_size
    values = int(num_frames) * int(h) * int(w) * 2
    if values > MAX_FRAME_VALUES:
        raise EventFileError(
            f"Frames of {num_frames} x {h} x {w} x 2 = {values:,} values"
            f"{_where(source)} exceed the budget of {MAX_FRAME_VALUES:,} (about 12 "
            "bytes each while integrating). Check the sensor_size stored in or "
            "passed for the file, lower num_frames, or raise "
            "keras_spikformer.data.event_limits.MAX_FRAME_VALUES."
        )


def check_event_values(t, x, y, source=None):
    """Refuses coordinates beyond int32 and timestamps beyond `MAX_ABS_TIMESTAMP`.

    Stored values are cast to int32 (`x`, `y`) and int64 (`t`); without this
    check `x = 2**32 + 3` would wrap to 3 and extreme timestamps would
    overflow the time split.

    Args:
        t, x, y: integer arrays (any integer dtype).
        source: the file named in the error.

    Example:
        >>> check_event_values(np.arange(3), np.arange(3), np.arange(3))
    """
    for name, a, limit in (
        ("x", x, MAX_COORDINATE),
        ("y", y, MAX_COORDINATE),
        ("t", t, MAX_ABS_TIMESTAMP),
    ):
        if not a.size:
            continue
        low, high = a.min(), a.max()
        # Python ints: no wrap for uint64 values beyond int64.
        if int(high) > limit or int(low) < -limit:
            unit = "timestamps in microseconds" if name == "t" else "pixels"
            raise EventFileError(
                f"Event field `{name}`{_where(source)} holds values in "
                f"[{int(low)}, {int(high)}], beyond the supported range "
                f"[-{limit}, {limit}] ({unit}); they would wrap when stored. "
                "Fix the recording (wrong units or a corrupt file?)."
            )
