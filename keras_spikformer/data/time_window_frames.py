"""Event frames by fixed time windows: online, chunk by chunk, and offline.

The training frames (`event_frames.integrate_events_to_frames`,
SpikingJelly's `split_by="number"`) cut a recording into `T` slices of
`N // T` events each. The cut points depend on the total event count `N`,
which is known only once the recording has ended: a live event camera cannot
be framed that way while it streams. (SpikingJelly's `split_by="time"` needs
the recording's last timestamp, so it is offline too.)

`TimeWindowFramer` cuts time instead: window `k` holds the events with
`t_start + k * window <= t < t_start + (k + 1) * window` and is counted per
pixel and polarity exactly like the offline frames (`frame[y, x, p]`,
float32 raw counts, channel = polarity). Events arrive in chunks of any size;
a window is complete, and its frame is returned, as soon as an event at or
after its end arrives (or `advance_to` says the clock has passed it). The
framer holds only the frame being filled, whatever the stream's length.

`integrate_events_by_time_window` frames a whole recording the same way, in
one go (the frames the framer gives for it).
"""

import numpy as np

from keras_spikformer.data import event_limits as _limits

__all__ = ["TimeWindowFramer", "integrate_events_by_time_window"]

_FIELDS = ("x", "y", "t", "p")


def _check_int(value, name, minimum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"{name} must be an integer in the events' time unit (e.g. "
            f"microseconds), got {value!r}."
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    if abs(int(value)) > _limits.MAX_ABS_TIMESTAMP:
        raise ValueError(
            f"{name}={value} is beyond the supported range of timestamps "
            f"(|t| <= {_limits.MAX_ABS_TIMESTAMP})."
        )
    return int(value)


def _check_events(x, y, t, p, sensor_size, what):
    """The four fields as 1-D int64 arrays, or a ValueError naming the problem."""
    arrays = [np.asarray(a).reshape(-1) for a in (x, y, t, p)]
    if len({a.size for a in arrays}) != 1:
        sizes = ", ".join(
            f"{k}: {a.size}" for k, a in zip(_FIELDS, arrays, strict=True)
        )
        raise ValueError(
            f"{what} needs x, y, t and p of the same length; got lengths "
            f"{{{sizes}}}. Pass one value per event in each array."
        )
    for name, a in zip(_FIELDS, arrays, strict=True):
        if a.size and a.dtype.kind not in "iub":
            raise ValueError(
                f"{what}: field `{name}` must hold integers, got dtype {a.dtype}. "
                "Convert timestamps to integer ticks (e.g. microseconds) and "
                "coordinates to integer pixels first."
            )
    x, y, t, p = arrays
    if not t.size:
        return tuple(np.zeros(0, np.int64) for _ in range(4))
    _limits.check_event_values(t, x, y, source=what)
    h, w = sensor_size
    for name, a, size, axis in (("x", x, w, "W"), ("y", y, h, "H")):
        if int(a.min()) < 0 or int(a.max()) >= size:
            bad = int(np.flatnonzero((a < 0) | (a >= size))[0])
            raise ValueError(
                f"{what}: event {bad} has {name}={int(a[bad])}, outside the "
                f"sensor (H, W)={(h, w)} (0 <= {name} < {axis}={size}). Pass the "
                "sensor's real sensor_size, or drop events outside it."
            )
    if not np.isin(p, (0, 1)).all():
        raise ValueError(
            f"{what}: polarity `p` must be 0 or 1, got values "
            f"{np.unique(p)[:5].tolist()}. Map OFF to 0 and ON to 1 "
            "(e.g. `p = (p > 0)`)."
        )
    return (
        x.astype(np.int64),
        y.astype(np.int64),
        t.astype(np.int64),
        p.astype(np.int64),
    )


def _zero_frame(h, w):
    """A read-only all-zero `[H, W, 2]` frame that takes no memory of its own."""
    return np.broadcast_to(np.zeros((), np.float32), (h, w, 2))


class TimeWindowFramer:
    """Turns a live event stream into `[H, W, 2]` frames of fixed time windows.

    Window `k` holds the events with `t_start + k * window <= t < t_start +
    (k + 1) * window`; its frame counts them per pixel and polarity
    (`frame[y, x, p]`, float32, as the offline frames). Feed events in time
    order, in chunks of any size (a window may span several chunks): `push`
    returns the frames of the windows the chunk completed, oldest first,
    including all-zero frames for windows without events (read-only zero
    views, so a long pause costs no memory). `flush` returns the last,
    partial window at the end of the stream and resets the framer.

    The framer holds one frame of counts (`nbytes`) and a few integers:
    nothing grows with the stream. Unlike SpikingJelly's fixed event-count
    split used for training (which needs the recording's total count), this
    can run while the camera streams; see `integrate_events_by_time_window`
    for the same frames offline.

    Args:
        sensor_size: `(H, W)` of the sensor (events with `x >= W` or
            `y >= H` are refused).
        window: window length, a positive integer in the events' time unit
            (microseconds for every reader in `keras_spikformer.data`).
        t_start: start of window 0; `None` (default) starts it at the first
            pushed event's timestamp. Events before `t_start` are refused.

    Example:
        >>> framer = TimeWindowFramer((2, 2), window=10)
        >>> framer.push(x=[0, 1], y=[0, 1], t=[0, 4], p=[1, 0])
        []
        >>> [float(f.sum()) for f in framer.push(x=[1], y=[0], t=[25], p=[1])]
        [2.0, 0.0]
        >>> [float(f.sum()) for f in framer.flush()]
        [1.0]
    """

    def __init__(self, sensor_size, window, t_start=None):
        self.sensor_size = _limits.check_sensor_size(sensor_size)
        _limits.check_frame_budget(1, self.sensor_size)
        self.window = _check_int(window, "window", minimum=1)
        self.t_start = None if t_start is None else _check_int(t_start, "t_start")
        h, w = self.sensor_size
        self._counts = np.zeros(h * w * 2, np.int64)
        self.reset()

    def reset(self):
        """Drops the window being filled and starts a new stream."""
        self._counts[:] = 0
        self._num_buffered = 0  # events in the window being filled
        self._window_start = self.t_start  # None until the first event
        self._last_t = None  # latest timestamp pushed or advanced to
        self.num_emitted = 0

    @property
    def window_start(self):
        """Start time of the window being filled (`None` before the first event)."""
        return self._window_start

    @property
    def num_buffered(self):
        """Number of events counted in the window being filled."""
        return self._num_buffered

    @property
    def nbytes(self):
        """Bytes of array state the framer holds: one frame of int64 counts."""
        return self._counts.nbytes

    def _emit(self, steps):
        """Closes the current window and `steps - 1` empty ones after it."""
        h, w = self.sensor_size
        if self._num_buffered:
            frames = [self._counts.astype(np.float32).reshape(h, w, 2)]
            self._counts[:] = 0
            self._num_buffered = 0
        else:
            frames = [_zero_frame(h, w)]
        frames += [_zero_frame(h, w)] * (steps - 1)
        self._window_start += steps * self.window
        self.num_emitted += steps
        return frames

    def _check_time_order(self, t_first, what, events=True):
        if self._last_t is not None and t_first < self._last_t:
            raise ValueError(
                f"{what} starts at t={t_first}, before the latest timestamp "
                f"already pushed (t={self._last_t}): timestamps must not "
                "decrease across chunks. Push chunks in time order, or call "
                "flush() or reset() before starting a new recording."
            )
        if events and self._window_start is not None and t_first < self._window_start:
            raise ValueError(
                f"{what} has t={t_first}, before t_start={self._window_start} "
                "(the start of window 0). Pass an earlier t_start, or drop the "
                "events before it."
            )

    def push(self, x, y, t, p):
        """Adds a chunk of events; returns the frames of the windows it completed.

        Args:
            x, y: pixel columns and rows (integers, `0 <= x < W`, `0 <= y < H`).
            t: timestamps (integers), non-decreasing within the chunk and not
                before the previous chunk's last one.
            p: polarities, 0 or 1 (booleans accepted).

        Returns:
            List of float32 `[H, W, 2]` frames, oldest first (often empty: the
            window being filled is kept until an event at or after its end).
            A chunk that fails a check changes nothing.

        Example:
            >>> framer = TimeWindowFramer((1, 1), window=5, t_start=0)
            >>> len(framer.push([0, 0], [0, 0], [3, 12], [1, 1]))
            2
        """
        x, y, t, p = _check_events(x, y, t, p, self.sensor_size, "Event chunk")
        if not t.size:
            return []
        down = np.flatnonzero(np.diff(t) < 0)
        if down.size:
            i = int(down[0]) + 1
            raise ValueError(
                f"Event chunk: timestamps must not decrease, but event {i} has "
                f"t={int(t[i])} after t={int(t[i - 1])}. Sort each recording by "
                "time (np.argsort(t, kind='stable')) before pushing it."
            )
        self._check_time_order(int(t[0]), "Event chunk")
        if self._window_start is None:
            self._window_start = int(t[0])
        self._last_t = int(t[-1])
        w_size = self.sensor_size[1]
        pixels = (y * w_size + x) * 2 + p
        rel = (t - self._window_start) // self.window  # non-decreasing, >= 0
        cuts = np.flatnonzero(np.diff(rel)) + 1
        frames, done = [], 0
        for start, end in zip(np.r_[0, cuts], np.r_[cuts, t.size], strict=True):
            k = int(rel[start])
            if k > done:
                frames += self._emit(k - done)
                done = k
            self._counts += np.bincount(pixels[start:end], minlength=self._counts.size)
            self._num_buffered += int(end - start)
        return frames

    def advance_to(self, t_now):
        """Declares that no event before `t_now` will come; returns the windows that closes.

        For a quiet scene: a camera that reports its clock without events
        still gets the (empty) frames of the windows that have passed.

        Args:
            t_now: current time (integer, not before the latest pushed event).

        Returns:
            List of float32 `[H, W, 2]` frames of the windows ending at or
            before `t_now`, oldest first.

        Example:
            >>> framer = TimeWindowFramer((1, 1), window=5, t_start=0)
            >>> len(framer.advance_to(12))
            2
        """
        t_now = _check_int(t_now, "t_now")
        self._check_time_order(t_now, "advance_to(t_now)", events=False)
        self._last_t = t_now
        if self._window_start is None:
            return []
        steps = (t_now - self._window_start) // self.window
        return self._emit(int(steps)) if steps > 0 else []

    def flush(self):
        """Ends the stream: the partial window's frame (if it holds events), then a reset.

        Returns:
            `[frame]` for a window holding events, else `[]`. The framer is
            then ready for a new recording (`t_start` as constructed).

        Example:
            >>> framer = TimeWindowFramer((1, 1), window=5)
            >>> _ = framer.push([0], [0], [7], [0])
            >>> framer.flush()[0][0, 0].tolist()
            [1.0, 0.0]
        """
        frames = self._emit(1) if self._num_buffered else []
        self.reset()
        return frames


def integrate_events_by_time_window(
    events, window, sensor_size=None, t_start=None, num_frames=None, source=None
):
    """Frames a whole recording by fixed time windows (what `TimeWindowFramer` gives).

    Window `k` holds the events with `t_start + k * window <= t < t_start +
    (k + 1) * window`. Without `num_frames` the frames run from window 0 to
    the window of the last event: the frames of `TimeWindowFramer.push` over
    the recording plus its `flush`. Events out of time order are stably sorted
    by `t` first, as in `integrate_events_to_frames`.

    SpikingJelly's `split_by="time"` with `T` frames (offline: it needs the
    last timestamp) is `window = (t[-1] - t[0]) // T`, `t_start = t[0]`,
    with every window after `T - 1` added into the last frame.

    Args:
        events: event dict with `t`, `x`, `y`, `p` (see `events.make_events`).
        window: window length, a positive integer in the events' time unit.
        sensor_size: `(H, W)`; defaults to `events["sensor_size"]`.
        t_start: start of window 0 (default: the first event's timestamp);
            events before it are refused.
        num_frames: if given, exactly this many frames: events of later
            windows are dropped and missing windows give zero frames (a
            fixed-length model input from a live stream's first windows).
        source: name used in error messages (e.g. the file path).

    Returns:
        float32 array `[K, H, W, 2]` of raw counts.

    Example:
        >>> from keras_spikformer.data.events import make_events
        >>> ev = make_events([0, 4, 25], [0, 1, 1], [0, 1, 0], [1, 0, 1])
        >>> integrate_events_by_time_window(ev, 10, (2, 2)).sum(axis=(1, 2, 3))
        array([2., 0., 1.], dtype=float32)
    """
    what = f"Events in {source!r}" if source else "Events"
    window = _check_int(window, "window", minimum=1)
    if sensor_size is None:
        sensor_size = events.get("sensor_size") if hasattr(events, "get") else None
    if sensor_size is None:
        raise ValueError(
            "sensor_size (H, W) is needed to frame the events; pass e.g. "
            "sensor_size=(128, 128) or store `sensor_size` in the .npz."
        )
    h, w = _limits.check_sensor_size(sensor_size, source)
    if num_frames is not None:
        num_frames = _check_int(num_frames, "num_frames", minimum=1)
    x, y, t, p = _check_events(*(events[k] for k in _FIELDS), (h, w), what)
    _limits.check_event_count(t.size, source)
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order], p[order]
    if t_start is None:
        t_start = int(t[0]) if t.size else 0
    t_start = _check_int(t_start, "t_start")
    if t.size and t[0] < t_start:
        raise ValueError(
            f"{what} start at t={int(t[0])}, before t_start={t_start}. Pass an "
            "earlier t_start, or drop the events before it."
        )
    k = (t - t_start) // window
    count = num_frames if num_frames is not None else (int(k[-1]) + 1 if t.size else 0)
    if count * h * w * 2 > _limits.MAX_FRAME_VALUES:
        raise ValueError(
            f"{what} span {count:,} windows of {window} (frames of {count:,} x {h} "
            f"x {w} x 2 values), beyond the budget of {_limits.MAX_FRAME_VALUES:,} "
            "values. Pass a longer window, or num_frames to keep only the first "
            "windows (TimeWindowFramer frames a long stream window by window)."
        )
    keep = k < count
    flat = ((k * h + y) * w + x) * 2 + p
    counts = np.bincount(flat[keep], minlength=count * h * w * 2)
    return counts.astype(np.float32).reshape(count, h, w, 2)
