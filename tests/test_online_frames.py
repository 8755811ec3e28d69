"""Online event framing by fixed time windows (`TimeWindowFramer`) and its offline twin."""

import tracemalloc

import numpy as np
import pytest

from keras_spikformer.data import (
    TimeWindowFramer,
    integrate_events_by_time_window,
    integrate_events_to_frames,
)
from keras_spikformer.data.events import make_events
from keras_spikformer.testing.synthetic_events import synthetic_events

# numpy only, whatever the Keras backend: once, in the TensorFlow pass.
pytestmark = pytest.mark.backend_independent

_FIELDS = ("x", "y", "t", "p")


def _bursty_recording(seed=0, sensor_size=(8, 12)):
    """Three bursts of events with pauses between them (several empty windows)."""
    rng = np.random.default_rng(seed)
    parts = [
        synthetic_events(2, 4, n, sensor_size, t0=t0, duration_us=d, rng=rng)
        for n, t0, d in ((300, 5, 400), (50, 2_000, 30), (200, 3_100, 900))
    ]
    return {k: np.concatenate([e[k] for e in parts]) for k in ("t", "x", "y", "p")}


def _push_in_chunks(framer, ev, cuts):
    frames = []
    for a, b in zip([0, *cuts], [*cuts, ev["t"].size], strict=True):
        frames += framer.push(*(ev[k][a:b] for k in _FIELDS))
    return frames + framer.flush()


def _frame(sensor_size, events):
    """Hand-made frame: `events` is a list of (x, y, p)."""
    out = np.zeros([*sensor_size, 2], np.float32)
    for x, y, p in events:
        out[y, x, p] += 1
    return out


@pytest.mark.parametrize("t_start", [None, 0, 5])
def test_chunked_pushing_gives_the_frames_of_the_whole_recording(t_start):
    ev = _bursty_recording()
    n = ev["t"].size
    want = integrate_events_by_time_window(ev, 100, (8, 12), t_start=t_start)
    # Windows from t_start to the last event (t = 3_100..3_999).
    assert want.shape == ((3_999 - (t_start or 5)) // 100 + 1, 8, 12, 2)
    assert want.sum() == n and (want.sum(axis=(1, 2, 3)) == 0).sum() >= 10
    rng = np.random.default_rng(1)
    framer = TimeWindowFramer((8, 12), window=100, t_start=t_start)
    chunkings = [[], list(range(1, n)), [0, 0, n // 2, n // 2, n]]
    chunkings += [sorted(rng.integers(0, n + 1, size)) for size in (3, 17, 60)]
    for cuts in chunkings:  # the same framer, reused after each flush
        got = _push_in_chunks(framer, ev, cuts)
        assert len(got) == len(want), cuts
        np.testing.assert_array_equal(np.stack(got), want)
        assert all(f.dtype == np.float32 and f.shape == (8, 12, 2) for f in got)


def test_a_window_split_over_chunks_is_emitted_once_complete():
    size = (2, 3)
    framer = TimeWindowFramer(size, window=10, t_start=0)
    assert framer.push(x=[0, 1], y=[0, 1], t=[0, 3], p=[1, 0]) == []
    assert framer.push(x=[2, 0], y=[0, 0], t=[7, 9], p=[1, 1]) == []  # same window
    assert framer.num_buffered == 4 and framer.window_start == 0
    (frame,) = framer.push(x=[2], y=[1], t=[10], p=[0])  # t=10 closes [0, 10)
    want = _frame(size, [(0, 0, 1), (1, 1, 0), (2, 0, 1), (0, 0, 1)])
    np.testing.assert_array_equal(frame, want)
    assert framer.window_start == 10 and framer.num_emitted == 1
    (last,) = framer.flush()
    np.testing.assert_array_equal(last, _frame(size, [(2, 1, 0)]))
    assert framer.window_start == 0 and framer.num_buffered == 0  # reset


def test_empty_windows_give_zero_frames():
    framer = TimeWindowFramer((2, 2), window=10)
    frames = framer.push(x=[1, 0], y=[0, 1], t=[100, 135], p=[0, 1])
    assert len(frames) == 3  # [100, 110) holds an event, the next two none
    np.testing.assert_array_equal(frames[0], _frame((2, 2), [(1, 0, 0)]))
    for f in frames[1:]:
        assert f.shape == (2, 2, 2) and f.dtype == np.float32 and not f.any()
    # A quiet stream: the clock alone closes windows, with zero frames.
    assert framer.advance_to(139) == []
    closed = framer.advance_to(160)  # [130, 140) holds the event at 135
    assert [float(f.sum()) for f in closed] == [1.0, 0.0, 0.0]
    assert framer.flush() == []  # nothing in [160, 170)
    assert framer.push([0], [0], [5], [0]) == []  # after flush: a new recording


def test_time_windows_match_spikingjelly_split_by_time_by_hand():
    # 7 events on a 2x3 sensor; split_by="time" with T=3 has dt = 20 // 3 = 6:
    # windows [0, 6), [6, 12), [12, 18) and [18, 24) hold events
    # {0, 1, 2, 3}, {4, 5}, {} and {6}; SpikingJelly's last frame runs to
    # the end of the recording, so it adds up the windows from 12 on.
    t, x = [0, 1, 2, 3, 10, 11, 20], [0, 1, 2, 0, 1, 1, 2]
    y, p = [0, 1, 0, 0, 1, 1, 1], [1, 0, 1, 1, 0, 1, 0]
    xyp = list(zip(x, y, p, strict=True))
    windows = [[0, 1, 2, 3], [4, 5], [], [6]]
    want = np.stack([_frame((2, 3), [xyp[i] for i in w]) for w in windows])

    framer = TimeWindowFramer((2, 3), window=6)
    got = np.stack(framer.push(x, y, t, p) + framer.flush())
    np.testing.assert_array_equal(got, want)
    ev = make_events(t, x, y, p)
    np.testing.assert_array_equal(integrate_events_by_time_window(ev, 6, (2, 3)), want)
    spikingjelly = integrate_events_to_frames(ev, 3, "time", (2, 3))
    np.testing.assert_array_equal(spikingjelly[:2], want[:2])
    np.testing.assert_array_equal(spikingjelly[2], want[2:].sum(axis=0))
    # A fixed number of frames: later windows dropped, missing ones zero.
    for num_frames in (2, 3):
        first = integrate_events_by_time_window(ev, 6, (2, 3), num_frames=num_frames)
        np.testing.assert_array_equal(first, want[:num_frames])
    padded = integrate_events_by_time_window(ev, 6, (2, 3), num_frames=6)
    np.testing.assert_array_equal(padded[:4], want)
    assert not padded[4:].any()


@pytest.mark.parametrize(
    "chunk, match",
    [
        (([0, 1], [0], [0, 1], [0, 1]), r"same length.*x: 2, y: 1, t: 2, p: 2"),
        (([0], [0], [0.5], [0]), r"`t` must hold integers.*float64.*microseconds"),
        (([4], [0], [20], [0]), r"event 0 has x=4, outside the sensor.*sensor_size"),
        (([0, 0], [0, -1], [20, 21], [0, 0]), r"event 1 has y=-1, outside"),
        (([0], [0], [20], [2]), r"polarity `p` must be 0 or 1.*p > 0"),
        (
            ([0, 0, 0], [0] * 3, [20, 22, 21], [0] * 3),
            r"event 2 has t=21 after t=22.*Sort",
        ),
        (([0], [0], [9], [0]), r"starts at t=9, before the latest.*flush\(\) or reset"),
    ],
)
def test_bad_chunks_are_refused_and_change_nothing(chunk, match):
    framer = TimeWindowFramer((2, 4), window=10)
    assert framer.push([1], [1], [10], [1]) == []
    with pytest.raises(ValueError, match=match):
        framer.push(*chunk)
    assert framer.num_buffered == 1 and framer.window_start == 10
    (frame,) = framer.push([1], [1], [20], [1])
    assert frame[1, 1, 1] == 1 and frame.sum() == 1


def test_bad_settings_and_events_before_t_start():
    with pytest.raises(ValueError, match="window must be >= 1"):
        TimeWindowFramer((2, 2), window=0)
    with pytest.raises(ValueError, match="window must be an integer"):
        TimeWindowFramer((2, 2), window=2.5)
    with pytest.raises(ValueError, match=r"sensor_size.*two positive integers"):
        TimeWindowFramer((2, 2, 2), window=1)
    framer = TimeWindowFramer((2, 2), window=10, t_start=100)
    with pytest.raises(ValueError, match=r"t=99, before t_start=100.*earlier t_start"):
        framer.push([0], [0], [99], [0])
    assert framer.advance_to(50) == []  # the clock may sit before t_start
    with pytest.raises(ValueError, match="before the latest"):
        framer.advance_to(40)
    ev = make_events([3, 4], [0, 0], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="before t_start=5"):
        integrate_events_by_time_window(ev, 1, (1, 1), t_start=5)
    with pytest.raises(ValueError, match="sensor_size"):
        integrate_events_by_time_window(ev, 1)
    with pytest.raises(
        ValueError, match=r"windows of 1 .*longer window, or num_frames"
    ):
        integrate_events_by_time_window(
            make_events([0, 10**9], [0] * 2, [0] * 2, [0] * 2), 1, (1, 1)
        )


def test_memory_stays_one_frame_whatever_the_stream_length():
    size = (64, 64)
    one_frame = 64 * 64 * 2 * 8  # int64 counts
    framer = TimeWindowFramer(size, window=1_000)
    rng = np.random.default_rng(0)

    def held():
        return sum(v.nbytes for v in vars(framer).values() if isinstance(v, np.ndarray))

    tracemalloc.start()
    try:
        emitted, t0 = 0, 0
        for i in range(300):  # 300 chunks, 60,000 events over ~250 windows
            t = np.sort(rng.integers(t0, t0 + 800, 200))
            x, y = rng.integers(0, 64, (2, 200))
            emitted += len(framer.push(x, y, t, rng.integers(0, 2, 200)))
            t0 = int(t[-1])
            assert held() == framer.nbytes == one_frame
            if i == 10:
                baseline = tracemalloc.get_traced_memory()[0]
        assert emitted > 200 and framer.num_buffered < 2_000
        grown = tracemalloc.get_traced_memory()[0] - baseline
        assert grown < one_frame, grown
        # A pause of 10**5 empty windows (13 GB of float32 128x128 frames if
        # materialised) costs no frame memory: the zero frames are views.
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        frames = framer.advance_to(t0 + 10**8)
        assert len(frames) >= 10**5 and not frames[-1].any()
        assert not frames[-1].flags.writeable  # shared zeros: read-only
        assert tracemalloc.get_traced_memory()[1] - before < 4 * 2**20
    finally:
        tracemalloc.stop()
