"""Integrating event streams into `[T, H, W, 2]` frames, with an on-disk cache.

The integration follows SpikingJelly's
`integrate_events_by_fixed_frames_number` (the pre-processing behind
Spikformer's CIFAR10-DVS and DVS128 Gesture results): events, in time order,
are cut into `T` index ranges `[j_l, j_r)` and each range is counted per
pixel and polarity. Frames are channels-last (channel index = polarity `p`),
float32 raw counts, not normalised.

Index rule (`cal_fixed_frames_number_segment_index`), `N` events:

- `split_by="number"`: `di = N // T`; frame `j` covers `[j * di, (j + 1) * di)`
  except the last, which ends at `N` (it takes the remainder).
- `split_by="time"`: `dt = (t[N-1] - t[0]) // T` (integer microseconds);
  frame `j` covers the events with `t[0] + j*dt <= t < t[0] + (j+1)*dt`,
  except the last, which runs to the end of the stream. Where SpikingJelly
  fails on an empty window this gives an empty frame, and when
  `t[N-1] - t[0] < T` (so `dt == 0`) all events land in the last frame.
"""

import hashlib
import json
import os
import tempfile

import numpy as np

from keras_spikformer.data import event_limits as _limits
from keras_spikformer.data import events as _events

__all__ = [
    "SPLIT_MODES",
    "default_cache_dir",
    "frame_segment_indices",
    "frames_cache_path",
    "integrate_events_to_frames",
    "integrate_to_frames_cached",
    "pool_frames",
]

SPLIT_MODES = ("number", "time")
_CACHE_VERSION = 1


def _check_split(num_frames, split_by):
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}.")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    if split_by not in SPLIT_MODES:
        raise ValueError(f"split_by must be one of {SPLIT_MODES}, got {split_by!r}.")


def frame_segment_indices(t, num_frames, split_by="number"):
    """Start/end event indices of each frame (SpikingJelly's rule).

    Args:
        t: sorted (non-decreasing) integer timestamps, shape `[N]`.
        num_frames: number of frames `T`.
        split_by: `"number"` (equal event counts, the last frame takes the
            remainder) or `"time"` (equal time windows).

    Returns:
        `(j_l, j_r)` int64 arrays of shape `[T]`; frame `j` holds events
        `j_l[j] <= i < j_r[j]`.

    Example:
        >>> frame_segment_indices(np.arange(7), 3)
        (array([0, 2, 4]), array([2, 4, 7]))
    """
    _check_split(num_frames, split_by)
    t = np.asarray(t)
    n = t.size
    if split_by == "number":
        di = n // num_frames
        j_l = np.arange(num_frames, dtype=np.int64) * di
        j_r = j_l + di
    elif n == 0:
        j_l, j_r = np.zeros(num_frames, np.int64), np.zeros(num_frames, np.int64)
    else:
        t = t.astype(np.int64)
        dt = (t[-1] - t[0]) // num_frames
        t_l = t[0] + dt * np.arange(num_frames, dtype=np.int64)
        j_l = np.searchsorted(t, t_l, side="left").astype(np.int64)
        j_r = np.searchsorted(t, t_l + dt, side="left").astype(np.int64)
    j_r[-1] = n
    return j_l, j_r


def integrate_events_to_frames(
    events, num_frames, split_by="number", sensor_size=None, source=None
):
    """Counts events into `num_frames` channels-last frames.

    Args:
        events: event dict with `t`, `x`, `y`, `p` (see `events.make_events`).
            Events out of time order are stably sorted by `t` first.
        num_frames: number of frames `T`; needs at least `T` events.
        split_by: `"number"` or `"time"` (see the module docstring).
        sensor_size: `(H, W)`; defaults to `events["sensor_size"]` when present.
        source: name used in error messages (e.g. the file path).

    Returns:
        float32 array `[T, H, W, 2]`; `frames[j, y, x, p]` counts the events
        of frame `j` at pixel `(x, y)` with polarity `p`.

    Example:
        >>> from keras_spikformer.data.events import make_events
        >>> ev = make_events([0, 1, 2, 3], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 1, 1])
        >>> integrate_events_to_frames(ev, 2, sensor_size=(2, 2)).shape
        (2, 2, 2, 2)
    """
    _check_split(num_frames, split_by)
    where = f" in {source!r}" if source else ""
    if sensor_size is None:
        sensor_size = events.get("sensor_size") if hasattr(events, "get") else None
    if sensor_size is None:
        raise ValueError(
            f"sensor_size (H, W) is needed to integrate the events{where}; pass "
            "e.g. sensor_size=(128, 128) or store `sensor_size` in the .npz."
        )
    h, w = _limits.check_sensor_size(sensor_size, source)
    _limits.check_frame_budget(num_frames, (h, w), source)
    t, x, y, p = (np.asarray(events[k]).reshape(-1) for k in ("t", "x", "y", "p"))
    n = t.size
    _limits.check_event_count(n, source)
    if n < num_frames:
        raise ValueError(
            f"Too few events{where}: {n} events cannot fill num_frames="
            f"{num_frames} frames. Lower num_frames or check the file "
            "(empty or truncated recording?)."
        )
    if x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h:
        raise ValueError(
            f"Event coordinates{where} exceed the sensor size (H, W)={h, w}: x in "
            f"[{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}]. Pass the "
            "right sensor_size."
        )
    if not np.isin(p, (0, 1)).all():
        raise ValueError(f"Polarities{where} must be 0 or 1.")
    _limits.check_event_values(t, x, y, source)
    if n > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, x, y, p = t[order], x[order], y[order], p[order]
    j_l, j_r = frame_segment_indices(t, num_frames, split_by)
    frame_of = np.full(n, -1, np.int64)
    for j in range(num_frames):
        frame_of[j_l[j] : j_r[j]] = j
    keep = frame_of >= 0
    flat = ((frame_of * h + y) * w + x) * 2 + p.astype(np.int64)
    counts = np.bincount(flat[keep], minlength=num_frames * h * w * 2)
    return counts.astype(np.float32).reshape(num_frames, h, w, 2)


def pool_frames(frames, image_size, mode="sum"):
    """Downsizes `[..., H, W, C]` frames by block pooling.

    Args:
        frames: array `[..., H, W, C]`.
        image_size: int or `(h, w)` dividing `(H, W)`, e.g. 64 for 128.
        mode: `"sum"` keeps raw event counts (default); `"mean"` averages
            (area resize).

    Returns:
        float32 array `[..., h, w, C]`.

    Example:
        >>> pool_frames(np.ones([4, 128, 128, 2]), 64).shape
        (4, 64, 64, 2)
    """
    frames = np.asarray(frames, dtype=np.float32)
    h_in, w_in = frames.shape[-3:-1]
    h, w = (image_size, image_size) if np.isscalar(image_size) else image_size
    h, w = int(h), int(w)
    if (h, w) == (h_in, w_in):
        return frames
    if h < 1 or w < 1 or h_in % h or w_in % w:
        raise ValueError(
            f"image_size {(h, w)} must divide the frame size {(h_in, w_in)} "
            "(block pooling only shrinks by whole factors); use e.g. "
            f"{(h_in // 2, w_in // 2)} or image_size=None."
        )
    if mode not in ("sum", "mean"):
        raise ValueError(f"mode must be 'sum' or 'mean', got {mode!r}.")
    fh, fw = h_in // h, w_in // w
    lead = frames.shape[:-3]
    blocks = frames.reshape(*lead, h, fh, w, fw, frames.shape[-1])
    axes = (len(lead) + 1, len(lead) + 3)
    out = blocks.sum(axis=axes) if mode == "sum" else blocks.mean(axis=axes)
    return out.astype(np.float32)


def default_cache_dir():
    """`$KERAS_HOME/spikformer_event_frames` (default `~/.keras/...`)."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(home, "spikformer_event_frames")


def _fingerprint(path):
    st = os.stat(path)
    return [os.path.abspath(os.fspath(path)), st.st_size, st.st_mtime_ns]


def _cache_path(cache_dir, stem, key):
    blob = json.dumps([_CACHE_VERSION, key], sort_keys=True, default=str)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:20]
    return os.path.join(os.fspath(cache_dir), f"{stem}-{digest}.npz")


def _atomic_save_npz(path, **arrays):
    """Writes `path` via a temp file in the same folder and `os.replace`."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load_cached(path):
    """Cached frames, or None when absent/unreadable (then rebuilt)."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["frames"].astype(np.float32, copy=False)
    except Exception:
        return None


def frames_cache_path(
    events_file,
    num_frames,
    split_by="number",
    cache_dir=None,
    sensor_size=None,
    orientation="spikingjelly",
):
    """The cache file `integrate_to_frames_cached` uses for these arguments.

    The name is `<file stem>-<hash>.npz`, the hash covering the absolute path,
    size and modification time of `events_file`, `num_frames`, `split_by`,
    `sensor_size` and `orientation`: editing the file invalidates its entry.

    Args:
        events_file: event file path (must exist).
        num_frames, split_by, sensor_size, orientation: as in
            `integrate_to_frames_cached`.
        cache_dir: cache folder (default `default_cache_dir()`).

    Returns:
        Path string.

    Example:
        >>> frames_cache_path("a.aedat", 16, cache_dir="/tmp/c")  # doctest: +SKIP
        '/tmp/c/a-3f2c....npz'
    """
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    key = {
        "file": _fingerprint(events_file),
        "num_frames": int(num_frames),
        "split_by": split_by,
        "sensor_size": None if sensor_size is None else [int(v) for v in sensor_size],
        "orientation": orientation,
    }
    stem = os.path.splitext(os.path.basename(os.fspath(events_file)))[0]
    return _cache_path(cache_dir, stem, key)


def integrate_to_frames_cached(
    events_file,
    num_frames,
    split_by="number",
    cache_dir=None,
    sensor_size=None,
    orientation="spikingjelly",
):
    """Frames of an event file, built once and then read from a cache.

    The first call reads `events_file` (via `events.read_events`), integrates
    it and writes `<cache_dir>/<stem>-<hash>.npz` atomically (temp file +
    `os.replace`, so an interrupted run leaves no partial entry); later calls
    with the same file (path, size, mtime) and arguments only load that npz.

    Args:
        events_file: `.aedat` (AEDAT 2.0 or 3.1) or `.npz` event file.
        num_frames: number of frames `T`.
        split_by: `"number"` or `"time"`.
        cache_dir: cache folder (default `default_cache_dir()`).
        sensor_size: `(H, W)`; default 128x128 for AEDAT (DVS128), the
            stored `sensor_size` for `.npz`.
        orientation: AEDAT 2.0 orientation (see `events.decode_dvs128_addresses`).

    Returns:
        float32 array `[T, H, W, 2]`.

    Example:
        >>> frames = integrate_to_frames_cached("cat_1.aedat", 16, "number",
        ...                                     cache_dir="/tmp/frames")  # doctest: +SKIP
    """
    _check_split(num_frames, split_by)
    events_file = os.fspath(events_file)
    if not os.path.isfile(events_file):
        raise _events.EventFileError(f"Event file not found: {events_file!r}.")
    path = frames_cache_path(
        events_file, num_frames, split_by, cache_dir, sensor_size, orientation
    )
    frames = _load_cached(path)
    if frames is not None:
        return frames
    if sensor_size is not None:  # refused before the file is read
        sensor_size = _limits.check_sensor_size(sensor_size, what="sensor_size")
        _limits.check_frame_budget(num_frames, sensor_size, events_file)
    ev = _events.read_events(events_file, orientation=orientation)
    stored = ev.get("sensor_size")
    if sensor_size is None:
        sensor_size = stored
        if sensor_size is None and not events_file.lower().endswith(".npz"):
            sensor_size = _events.DVS128_SENSOR_SIZE
    elif stored is not None and tuple(stored) != tuple(sensor_size):
        raise _limits.EventFileError(
            f"Event file {events_file!r} was recorded on a {stored[0]}x{stored[1]} "
            f"sensor (its stored sensor_size) but is integrated on "
            f"{sensor_size[0]}x{sensor_size[1]}. Keep recordings of one sensor "
            "size per folder, or pass the matching sensor_size."
        )
    frames = integrate_events_to_frames(
        ev, num_frames, split_by, sensor_size, source=events_file
    )
    _atomic_save_npz(path, frames=frames)
    return frames
