"""Event files (AEDAT 2.0 / 3.1 / npz), frame integration, cache and datasets."""

import os

import numpy as np
import pytest

from keras_spikformer.data import event_datasets, event_frames, events
from keras_spikformer.data.events import EventFileError, make_events
from keras_spikformer.testing import synthetic_events as synth

# Event files and frame integration run in numpy and tf.data whatever the
# Keras backend: once, in the TensorFlow pass.
pytestmark = pytest.mark.backend_independent



def _write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _assert_events_equal(got, want):
    for k in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def _events_in_cache(cache):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs)


# ---------------------------------------------------------------- decoding


def test_dvs128_address_bits():
    # polarity bit 0, x bits 1-7, y bits 8-14.
    addr = np.array([(100 << 8) | (7 << 1) | 1, (3 << 8) | (127 << 1) | 0])
    x, y, p = events.decode_dvs128_addresses(addr, "raw")
    assert x.tolist() == [7, 127] and y.tolist() == [100, 3] and p.tolist() == [1, 0]
    x, y, p = events.decode_dvs128_addresses(addr)  # SpikingJelly orientation
    assert x.tolist() == [127 - 100, 127 - 3]
    assert y.tolist() == [127 - 7, 0] and p.tolist() == [0, 1]
    x, y, p = events.decode_dvs128_addresses(addr, "dat2mat")
    assert x.tolist() == [120, 0] and y.tolist() == [100, 3] and p.tolist() == [0, 1]


@pytest.mark.parametrize("orientation", ["spikingjelly", "dat2mat", "raw"])
def test_aedat2_round_trip(tmp_path, orientation):
    rng = np.random.default_rng(1)
    n = 50
    ev = make_events(
        np.sort(rng.integers(0, 2**32 - 1, n)),
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    addr = events.encode_dvs128_addresses(ev["x"], ev["y"], ev["p"], orientation)
    path = _write(tmp_path / "a.aedat", synth.encode_aedat2(addr, ev["t"]))
    got = events.read_cifar10dvs(path, orientation)
    _assert_events_equal(got, ev)
    assert got["t"].dtype == np.int64
    raw_addr, raw_t = events.read_aedat2(path)
    np.testing.assert_array_equal(raw_addr, addr)
    _assert_events_equal(events.read_events(path, orientation=orientation), ev)


def test_aedat31_round_trip_overflow_packets_and_valid_bit(tmp_path):
    n = 40
    rng = np.random.default_rng(2)
    t = np.sort(rng.integers(2**31 - 1000, 2**31 + 1000, n))  # crosses an epoch
    ev = make_events(
        t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    )
    valid = np.ones(n, bool)
    valid[[3, 17]] = False
    data = synth.encode_aedat31(
        ev, events_per_packet=7, valid=valid, special_packet=True
    )
    path = _write(tmp_path / "user01_led.aedat", data)
    got = events.read_aedat31(path)
    _assert_events_equal(got, {k: v[valid] for k, v in ev.items()})
    _assert_events_equal(events.read_aedat31(path, drop_invalid=False), ev)
    _assert_events_equal(events.read_events(path), {k: v[valid] for k, v in ev.items()})


def test_npz_round_trip(tmp_path):
    ev = make_events([5, 9], [1, 3], [2, 0], [True, False])
    path = events.write_npz_events(tmp_path / "s", ev, sensor_size=(4, 5))
    assert path.endswith(".npz")
    got = events.read_events(path)
    _assert_events_equal(got, ev)
    assert got["sensor_size"] == (4, 5)


def test_dvsgesture_labels_and_split(tmp_path):
    csv = tmp_path / "user01_led_labels.csv"
    csv.write_text("class,startTime_usec,endTime_usec\n3,10,20\n11,20,30\n\n")
    rows = events.read_dvsgesture_labels(csv)
    np.testing.assert_array_equal(rows, [[2, 10, 20], [10, 20, 30]])
    ev = make_events([9, 10, 19, 20, 29, 30], [0] * 6, [0] * 6, [0, 1, 0, 1, 0, 1])
    (a, la), (b, lb) = events.split_dvsgesture_recording(ev, rows)
    assert (la, lb) == (2, 10)
    assert a["t"].tolist() == [10, 19] and b["t"].tolist() == [20, 29]


# ------------------------------------------------------------ read errors

_HDR2 = b"#!AER-DAT2.0\r\n# comment\r\n"
_HDR3 = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"


@pytest.mark.parametrize(
    "data,reader,match",
    [
        (b"", events.read_aedat2, "empty"),
        (_HDR2 + b"\x00" * 12, events.read_aedat2, "Truncated record"),
        (_HDR2, events.read_aedat2, "No events"),
        (b"#!AER-DAT2.0 no newline", events.read_aedat2, "Bad header"),
        (b"\x00\x01\x02\x03" * 4, events.read_aedat2, "Wrong magic"),
        (_HDR3 + b"\x00" * 8, events.read_aedat2, "Wrong AEDAT version"),
        (_HDR2 + b"\x00" * 8, events.read_aedat31, "Bad header"),  # no END-HEADER
        (
            b"#!AER-DAT2.0\r\n#!END-HEADER\r\n",
            events.read_aedat31,
            "Wrong AEDAT version",
        ),
        (b"", events.read_aedat31, "empty"),
        (_HDR3 + b"\x01\x00" * 5, events.read_aedat31, "Truncated packet header"),
        (_HDR3, events.read_aedat31, "No events"),
        (b"GARBAGE\n", events.read_events, "Wrong magic"),
    ],
)
def test_read_errors_name_the_file(tmp_path, data, reader, match):
    path = _write(tmp_path / "bad.aedat", data)
    with pytest.raises(EventFileError, match=match) as info:
        reader(path)
    assert "bad.aedat" in str(info.value)


def test_aedat31_truncated_and_non_polarity(tmp_path):
    ev = make_events([1, 2, 3], [1, 2, 3], [1, 2, 3], [0, 1, 0])
    data = synth.encode_aedat31(ev)
    path = _write(tmp_path / "cut.aedat", data[:-5])
    with pytest.raises(EventFileError, match="Truncated packet.*cut.aedat"):
        events.read_aedat31(path)
    only_special = synth.encode_aedat31(
        make_events([], [], [], []), special_packet=True
    )
    path = _write(tmp_path / "special.aedat", only_special)
    with pytest.raises(EventFileError, match="No events.*special.aedat"):
        events.read_aedat31(path)
    with pytest.raises(EventFileError, match="not found"):
        events.read_events(tmp_path / "missing.aedat")


def test_npz_and_label_errors(tmp_path):
    np.savez(tmp_path / "nop.npz", t=np.arange(3), x=np.arange(3))
    with pytest.raises(EventFileError, match=r"nop.npz.*lacks arrays \['y', 'p'\]"):
        events.read_npz_events(tmp_path / "nop.npz")
    np.savez(tmp_path / "empty.npz", t=[], x=[], y=[], p=[])
    with pytest.raises(EventFileError, match="No events.*empty.npz"):
        events.read_npz_events(tmp_path / "empty.npz")
    np.savez(tmp_path / "pol.npz", t=[0], x=[0], y=[0], p=[-1])
    with pytest.raises(EventFileError, match="pol.npz.*polarity"):
        events.read_npz_events(tmp_path / "pol.npz")
    bad = tmp_path / "x_labels.csv"
    bad.write_text("label,start,end\n1,0,10\n")
    with pytest.raises(EventFileError, match="Bad header.*x_labels.csv"):
        events.read_dvsgesture_labels(bad)
    bad.write_text("class,startTime_usec,endTime_usec\n12,0,10\n")
    with pytest.raises(EventFileError, match="Bad row 2"):
        events.read_dvsgesture_labels(bad)
    with pytest.raises(EventFileError, match="Label file not found"):
        events.read_dvsgesture_labels(tmp_path / "nope_labels.csv")


# ------------------------------------------------------------- integration

# 7 events on a 2x3 sensor (H=2, W=3).
_T = [0, 1, 2, 3, 10, 11, 20]
_X = [0, 1, 2, 0, 1, 1, 2]
_Y = [0, 1, 0, 0, 1, 1, 1]
_P = [1, 0, 1, 1, 0, 1, 0]


def _hand_frames(groups):
    """Frames from explicit index groups (the expected integration)."""
    out = np.zeros([len(groups), 2, 3, 2], np.float32)
    for j, idx in enumerate(groups):
        for i in idx:
            out[j, _Y[i], _X[i], _P[i]] += 1
    return out


@pytest.mark.parametrize(
    "num_frames,split_by,groups",
    [
        # number: di = 7 // 2 = 3 -> [0,3), [3,7) (last takes the remainder)
        (2, "number", [[0, 1, 2], [3, 4, 5, 6]]),
        # number: di = 7 // 3 = 2 -> [0,2), [2,4), [4,7)
        (3, "number", [[0, 1], [2, 3], [4, 5, 6]]),
        # time: dt = 20 // 2 = 10 -> [0,10), [10, end]
        (2, "time", [[0, 1, 2, 3], [4, 5, 6]]),
        # time: dt = 20 // 3 = 6 -> [0,6), [6,12), [12, end]
        (3, "time", [[0, 1, 2, 3], [4, 5], [6]]),
    ],
)
def test_integration_matches_hand_counts(num_frames, split_by, groups):
    ev = make_events(_T, _X, _Y, _P)
    frames = event_frames.integrate_events_to_frames(ev, num_frames, split_by, (2, 3))
    assert frames.shape == (num_frames, 2, 3, 2) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames, _hand_frames(groups))
    j_l, j_r = event_frames.frame_segment_indices(np.asarray(_T), num_frames, split_by)
    assert [list(range(a, b)) for a, b in zip(j_l, j_r, strict=True)] == groups


def test_integration_counts_duplicates_sorts_and_empty_windows():
    # Duplicated pixel counted twice; unsorted input is sorted stably first.
    ev = make_events([5, 0, 5, 1], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0])
    frames = event_frames.integrate_events_to_frames(ev, 2, "number", (1, 2))
    np.testing.assert_array_equal(frames[0, 0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(frames[1, 0], [[0, 0], [0, 2]])
    # Time split with an empty middle window gives an empty frame.
    ev = make_events([0, 1, 29, 30], [0] * 4, [0] * 4, [0] * 4)
    frames = event_frames.integrate_events_to_frames(ev, 3, "time", (1, 1))
    assert frames[:, 0, 0, 0].tolist() == [2, 0, 2]


def test_integration_errors():
    ev = make_events([0, 1], [0, 0], [0, 0], [0, 1])
    with pytest.raises(
        ValueError, match="Too few events in 'f.aedat'.*Lower num_frames"
    ):
        event_frames.integrate_events_to_frames(
            ev, 3, "number", (1, 1), source="f.aedat"
        )
    with pytest.raises(ValueError, match="exceed the sensor size"):
        event_frames.integrate_events_to_frames(
            make_events([0], [4], [0], [0]), 1, sensor_size=(2, 2)
        )
    with pytest.raises(ValueError, match="sensor_size"):
        event_frames.integrate_events_to_frames(ev, 1)
    with pytest.raises(ValueError, match="split_by"):
        event_frames.integrate_events_to_frames(ev, 1, "count", (1, 1))


def test_pool_frames():
    frames = np.arange(2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 4, 4, 2)
    pooled = event_frames.pool_frames(frames, 2)
    assert pooled.shape == (2, 2, 2, 2)
    assert pooled[0, 0, 0, 0] == frames[0, :2, :2, 0].sum()
    np.testing.assert_allclose(pooled.sum(), frames.sum())
    np.testing.assert_allclose(
        event_frames.pool_frames(frames, (2, 2), "mean"), pooled / 4
    )
    with pytest.raises(ValueError, match="must divide"):
        event_frames.pool_frames(frames, 3)


# ------------------------------------------------------------------- cache


def test_cache_builds_once_and_tracks_changes(tmp_path, monkeypatch):
    ev = synth.synthetic_events(1, 10, 30)
    addr = events.encode_dvs128_addresses(ev["x"], ev["y"], ev["p"])
    src = _write(tmp_path / "rec.aedat", synth.encode_aedat2(addr, ev["t"]))
    reads = []
    real = events.read_events

    def counting(path, **kw):
        reads.append(path)
        return real(path, **kw)

    monkeypatch.setattr(events, "read_events", counting)
    cache = tmp_path / "cache"
    first = event_frames.integrate_to_frames_cached(src, 3, "number", cache)
    second = event_frames.integrate_to_frames_cached(src, 3, "number", cache)
    assert len(reads) == 1
    np.testing.assert_array_equal(first, second)
    assert first.shape == (3, 128, 128, 2) and first.sum() == 30
    expected = event_frames.integrate_events_to_frames(
        events.read_cifar10dvs(src), 3, "number", (128, 128)
    )
    np.testing.assert_array_equal(first, expected)
    entries = _events_in_cache(cache)
    assert len(entries) == 1 and os.path.basename(entries[0]).startswith("rec-")
    assert entries[0] == event_frames.frames_cache_path(src, 3, "number", cache)
    # Other arguments are other entries.
    event_frames.integrate_to_frames_cached(src, 3, "time", cache)
    assert len(reads) == 2
    # Editing the source (size/mtime change) invalidates its entry.
    _write(src, synth.encode_aedat2(addr[:20], ev["t"][:20]))
    os.utime(src, ns=(1, 1))
    third = event_frames.integrate_to_frames_cached(src, 3, "number", cache)
    assert len(reads) == 3 and third.sum() == 20


def test_cache_writes_nothing_on_failure(tmp_path):
    src = _write(tmp_path / "tiny.aedat", synth.encode_aedat2([1, 2], [0, 1]))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="Too few events.*tiny.aedat"):
        event_frames.integrate_to_frames_cached(src, 4, "number", cache)
    assert _events_in_cache(cache) == []


# ---------------------------------------------------------------- datasets


def test_cifar10dvs_dataset(tmp_path, monkeypatch):
    root = synth.write_synthetic_cifar10dvs(
        tmp_path / "c10", num_per_class=2, num_events=20
    )
    # airplane gets 4 files 0, 1, 10, 2 (string order): 5 events in _2, 7 in _10.
    for i, n in ((2, 5), (10, 7)):
        ev = synth.synthetic_events(0, 10, n)
        addr = events.encode_dvs128_addresses(ev["x"], ev["y"], ev["p"])
        _write(
            os.path.join(root, "airplane", f"cifar10_airplane_{i}.aedat"),
            synth.encode_aedat2(addr, ev["t"]),
        )
    cache = tmp_path / "cache"
    kw = dict(num_frames=4, cache_dir=cache, train_fraction=0.5, verbose=0)
    test = event_datasets.event_frames_dataset(root, "cifar10dvs", split="test", **kw)
    assert test.class_names == events.CIFAR10DVS_CLASS_NAMES
    assert test.num_examples == 2 + 9  # ceil(4 * .5) = 2 train of airplane
    items = [(f.numpy(), int(label)) for f, label in test.dataset]
    assert [label for _, label in items] == [0, 0] + list(range(1, 10))
    assert [f.sum() for f, _ in items[:2]] == [7, 5]  # _10 sorts before _2
    f0 = items[0][0]
    assert f0.shape == (4, 128, 128, 2) and f0.dtype == np.float32

    # Train (resized by sum pooling) builds its entries once; the next call
    # reads no event file at all.
    train = event_datasets.event_frames_dataset(
        root, "cifar10dvs", split="train", image_size=64, **kw
    )
    assert train.num_examples == 2 + 9
    spec = train.dataset.element_spec
    assert tuple(spec[0].shape) == (4, 64, 64, 2) and spec[1].dtype.name == "int32"

    def no_reads(*a, **k):
        raise AssertionError("event file read although cached")

    monkeypatch.setattr(events, "read_events", no_reads)
    again = event_datasets.event_frames_dataset(
        root, "cifar10dvs", split="train", image_size=64, shuffle=False, **kw
    )
    frames = [(f.numpy(), int(label)) for f, label in again.dataset]
    assert sorted(label for _, label in frames) == [0, 0] + list(range(1, 10))
    assert all(f.sum() == 20 for f, _ in frames)  # sum pooling keeps counts
    assert not any(
        os.path.basename(p).startswith(".tmp") for p in _events_in_cache(cache)
    )


def test_dvsgesture_dataset(tmp_path, monkeypatch):
    root = synth.write_synthetic_dvsgesture(
        tmp_path / "DvsGesture",
        num_train_users=1,
        num_test_users=1,
        lightings=("led",),
        num_events=16,
    )
    cache = tmp_path / "cache"
    # root may be the folder holding DvsGesture/.
    train = event_datasets.event_frames_dataset(
        tmp_path,
        "dvsgesture",
        num_frames=2,
        split="train",
        cache_dir=cache,
        shuffle=False,
        verbose=0,
    )
    assert train.num_examples == 11 and len(train.class_names) == 11
    items = [(f.numpy(), int(label)) for f, label in train.dataset]
    assert [label for _, label in items] == list(range(11))
    assert all(f.shape == (2, 128, 128, 2) and f.sum() == 16 for f, _ in items)

    def no_reads(*a, **k):
        raise AssertionError("recording read although cached")

    monkeypatch.setattr(events, "read_aedat31", no_reads)
    again = event_datasets.event_frames_dataset(
        root, "dvsgesture", num_frames=2, split="train", cache_dir=cache, verbose=0
    )
    assert again.num_examples == 11
    monkeypatch.undo()
    test = event_datasets.event_frames_dataset(
        root,
        "dvsgesture",
        num_frames=2,
        split="test",
        cache_dir=cache,
        verbose=0,
        image_size=32,
    )
    assert test.num_examples == 11
    assert tuple(test.dataset.element_spec[0].shape) == (2, 32, 32, 2)
    os.remove(os.path.join(root, "trials_to_test.txt"))
    with pytest.raises(FileNotFoundError, match="trials_to_test.txt"):
        event_datasets.event_frames_dataset(
            root, "dvsgesture", split="test", cache_dir=cache
        )


def test_npz_folder_dataset(tmp_path):
    root = synth.write_synthetic_npz_folder(
        tmp_path / "npz", num_per_class=4, sensor_size=(8, 8), num_events=12
    )
    kw = dict(num_frames=3, cache_dir=tmp_path / "cache", train_fraction=0.5, verbose=0)
    data, names, n = event_datasets.event_frames_dataset(
        root, "npz_folder", split="test", **kw
    )
    assert names == ("a", "b") and n == 4
    assert tuple(data.element_spec[0].shape) == (3, 8, 8, 2)
    assert sorted(int(label) for _, label in data) == [0, 0, 1, 1]
    bare = synth.write_synthetic_npz_folder(tmp_path / "bare", store_sensor_size=False)
    with pytest.raises(ValueError, match="sensor_size"):
        event_datasets.event_frames_dataset(bare, "npz_folder", split="test", **kw)
    data, _, n = event_datasets.event_frames_dataset(
        bare, "npz_folder", split="test", sensor_size=(32, 32), **kw
    )
    assert n == 4 and tuple(data.element_spec[0].shape) == (3, 32, 32, 2)


def test_dataset_errors_leave_cache_clean(tmp_path):
    cache = tmp_path / "cache"
    kw = dict(num_frames=2, cache_dir=cache, verbose=0)
    with pytest.raises(FileNotFoundError, match="CIFAR10-DVS root not found.*<class>"):
        event_datasets.event_frames_dataset(tmp_path / "none", "cifar10dvs", **kw)
    root = tmp_path / "c10"
    os.makedirs(root / "airplane")
    with pytest.raises(FileNotFoundError, match="lacks the class folders.*automobile"):
        event_datasets.event_frames_dataset(root, "cifar10dvs", **kw)
    synth.write_synthetic_cifar10dvs(root, num_per_class=2, num_events=10)
    for f in os.listdir(root / "dog"):
        os.remove(root / "dog" / f)
    with pytest.raises(FileNotFoundError, match="dog.*no .aedat files"):
        event_datasets.event_frames_dataset(root, "cifar10dvs", **kw)
    synth.write_synthetic_cifar10dvs(root, num_per_class=2, num_events=10)
    with pytest.raises(ValueError, match="image_size"):
        event_datasets.event_frames_dataset(root, "cifar10dvs", image_size=60, **kw)
    with pytest.raises(FileNotFoundError, match="DVS128 Gesture split list"):
        event_datasets.event_frames_dataset(root, "dvsgesture", **kw)
    with pytest.raises(ValueError, match="dataset must be one of"):
        event_datasets.event_frames_dataset(root, "nmnist", **kw)
    assert _events_in_cache(cache) == []
    # A corrupt file mid-build: error names it, finished entries stay whole.
    bad = root / "frog" / "cifar10_frog_0.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.raises(EventFileError, match="Truncated record.*cifar10_frog_0"):
        event_datasets.event_frames_dataset(root, "cifar10dvs", **kw)
    entries = _events_in_cache(cache)
    assert entries and not any(os.path.basename(p).startswith(".tmp") for p in entries)
    for p in entries:
        assert np.load(p)["frames"].shape == (2, 128, 128, 2)
