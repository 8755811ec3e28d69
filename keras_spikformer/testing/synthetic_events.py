"""Tiny synthetic event datasets in the published file formats.

For tests and the tutorials' smoke mode: they write valid AEDAT 2.0
(CIFAR10-DVS layout), AEDAT 3.1 (DVS128 Gesture layout, with label CSVs and
the train/test trial lists) and npz folders holding a few events per
recording. Each class puts its events around its own spot of the sensor, so a
small model can learn them.
"""

import math
import os

import numpy as np

from keras_spikformer.data import aedat as _aedat
from keras_spikformer.data import events as _events

__all__ = [
    "encode_aedat2",
    "encode_aedat31",
    "synthetic_events",
    "write_synthetic_cifar10dvs",
    "write_synthetic_dvsgesture",
    "write_synthetic_npz_folder",
]

_AEDAT2_HEADER = (
    "#!AER-DAT2.0",
    "# This is a raw AE data file - do not edit",
    "# Data format is int32 address, int32 timestamp (8 bytes total), "
    "repeated for each event",
    "# Timestamps tick is 1 us",
    "# created by keras_spikformer.testing.synthetic_events",
)
_AEDAT31_HEADER = (
    "#!AER-DAT3.1",
    "#Format: RAW",
    "#Source 1: DVS128",
    "#Start-Time: 2017-01-01 00:00:00 (TZ+0000)",
    "#!END-HEADER",
)


def encode_aedat2(addresses, timestamps, header_lines=_AEDAT2_HEADER):
    """Encodes records as AEDAT 2.0 bytes (header + big-endian uint32 pairs).

    Args:
        addresses: uint32 addresses (see `events.encode_dvs128_addresses`).
        timestamps: timestamps in microseconds, each < 2**32.
        header_lines: ASCII header lines, each starting with `#`.

    Returns:
        `bytes` of the file.

    Example:
        >>> data = encode_aedat2([1287], [10])
        >>> data.startswith(b"#!AER-DAT2.0")
        True
    """
    words = np.stack(
        [np.asarray(addresses, np.uint32), np.asarray(timestamps, np.uint32)], 1
    )
    header = "".join(f"{line}\r\n" for line in header_lines).encode("ascii")
    return header + words.astype(">u4").tobytes()


def _packet(event_type, words, ts_overflow, valid):
    n = len(words)
    head = np.zeros(1, _aedat.AEDAT31_PACKET_HEADER)
    head[0] = (event_type, 1, 8, 4, ts_overflow, n, n, valid)
    return head.tobytes() + np.asarray(words, "<u4").tobytes()


def encode_aedat31(
    events,
    events_per_packet=256,
    valid=None,
    special_packet=False,
    header_lines=_AEDAT31_HEADER,
):
    """Encodes polarity events as AEDAT 3.1 bytes.

    Packets hold at most `events_per_packet` events and one timestamp
    overflow epoch (`t >> 31`); each event is `uint32 data` (bit 0 valid,
    bit 1 polarity, bits 2-16 y, bits 17-31 x) and `uint32 t & 0x7FFFFFFF`.

    Args:
        events: event dict (`t`, `x`, `y`, `p`), `t` sorted.
        events_per_packet: maximum events per packet.
        valid: optional boolean array; False writes the valid bit as 0.
        special_packet: also write a non-polarity packet (eventType 0) first,
            which readers must skip.
        header_lines: ASCII header lines, the last `#!END-HEADER`.

    Returns:
        `bytes` of the file.

    Example:
        >>> ev = _events.make_events([0, 5], [1, 2], [3, 4], [1, 0])
        >>> encode_aedat31(ev)[:12]
        b'#!AER-DAT3.1'
    """
    t = np.asarray(events["t"], np.int64)
    x, y, p = (np.asarray(events[k], np.int64) for k in ("x", "y", "p"))
    ok = np.ones(t.size, bool) if valid is None else np.asarray(valid, bool)
    data = (x << 17) | (y << 2) | (p << 1) | ok.astype(np.int64)
    words = np.stack([data, t & 0x7FFFFFFF], 1).astype(np.uint32)
    overflow = t >> 31
    out = ["".join(f"{line}\r\n" for line in header_lines).encode("ascii")]
    if special_packet:
        out.append(_packet(0, [[1, 0], [1, 1]], 0, 2))
    start = 0
    while start < t.size:
        end = min(start + events_per_packet, t.size)
        same = np.nonzero(overflow[start:end] != overflow[start])[0]
        if same.size:
            end = start + int(same[0])
        chunk = slice(start, end)
        out.append(_packet(1, words[chunk], int(overflow[start]), int(ok[chunk].sum())))
        start = end
    return b"".join(out)


def synthetic_events(
    label,
    num_classes,
    num_events,
    sensor_size=(128, 128),
    t0=0,
    duration_us=100_000,
    rng=None,
):
    """Random events clustered around a class-specific spot of the sensor.

    Args:
        label: class index.
        num_classes: number of classes (spots are laid out on a grid).
        num_events: number of events.
        sensor_size: `(H, W)`.
        t0: first possible timestamp (microseconds).
        duration_us: events fall in `[t0, t0 + duration_us)`.
        rng: `numpy.random.Generator` (default seeded with 0).

    Returns:
        Event dict sorted by `t`.

    Example:
        >>> ev = synthetic_events(3, 10, 50)
        >>> ev["t"].size
        50
    """
    rng = np.random.default_rng(0) if rng is None else rng
    h, w = sensor_size
    g = math.ceil(math.sqrt(num_classes))
    cy, cx = ((label // g) + 0.5) * h / g, ((label % g) + 0.5) * w / g
    sy, sx = max(h / g / 5, 0.5), max(w / g / 5, 0.5)
    x = np.clip(np.round(rng.normal(cx, sx, num_events)), 0, w - 1)
    y = np.clip(np.round(rng.normal(cy, sy, num_events)), 0, h - 1)
    p = (rng.random(num_events) < 0.3 + 0.4 * (label % 2)).astype(int)
    t = np.sort(rng.integers(t0, t0 + duration_us, num_events))
    return _events.make_events(t, x.astype(int), y.astype(int), p)


def write_synthetic_cifar10dvs(
    root, num_per_class=4, num_events=64, seed=0, orientation="spikingjelly"
):
    """Writes a tiny CIFAR10-DVS: `<root>/<class>/cifar10_<class>_<i>.aedat`.

    Args:
        root: output folder (created).
        num_per_class: recordings per class (10 classes).
        num_events: events per recording.
        seed: random seed.
        orientation: address encoding (see `events.decode_dvs128_addresses`).

    Returns:
        `root` as a string.

    Example:
        >>> root = write_synthetic_cifar10dvs("/tmp/c10dvs", 2)  # doctest: +SKIP
    """
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    for label, name in enumerate(_events.CIFAR10DVS_CLASS_NAMES):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(num_per_class):
            ev = synthetic_events(label, 10, num_events, rng=rng)
            addr = _events.encode_dvs128_addresses(
                ev["x"], ev["y"], ev["p"], orientation
            )
            with open(os.path.join(folder, f"cifar10_{name}_{i}.aedat"), "wb") as f:
                f.write(encode_aedat2(addr, ev["t"]))
    return root


def write_synthetic_dvsgesture(
    root,
    num_train_users=2,
    num_test_users=1,
    lightings=("led", "natural"),
    num_events=64,
    seed=0,
    gesture_us=200_000,
    gap_us=50_000,
):
    """Writes a tiny DVS128 Gesture: AEDAT 3.1 recordings, label CSVs, trial lists.

    Each `userXX_<lighting>.aedat` holds the 11 gestures in order (labels 1..11
    in its `_labels.csv`), each `gesture_us` long with `num_events` events,
    separated by `gap_us` of a few unlabelled noise events. Users
    `1..num_train_users` go to `trials_to_train.txt`, the next ones to
    `trials_to_test.txt`.

    Args:
        root: output folder (created).
        num_train_users: users in the train list.
        num_test_users: users in the test list.
        lightings: lighting names, one recording per user and lighting.
        num_events: events per gesture.
        seed: random seed.
        gesture_us: gesture duration (microseconds).
        gap_us: gap between gestures (microseconds).

    Returns:
        `root` as a string.

    Example:
        >>> root = write_synthetic_dvsgesture("/tmp/gesture")  # doctest: +SKIP
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_cls = len(_events.DVSGESTURE_CLASS_NAMES)
    lists = {"train": [], "test": []}
    for user in range(1, num_train_users + num_test_users + 1):
        for lighting in lightings:
            name = f"user{user:02d}_{lighting}"
            parts, rows, t0 = [], ["class,startTime_usec,endTime_usec"], gap_us
            for label in range(n_cls):
                parts.append(
                    synthetic_events(
                        label, n_cls, num_events, t0=t0, duration_us=gesture_us, rng=rng
                    )
                )
                rows.append(f"{label + 1},{t0},{t0 + gesture_us}")
                noise_t0 = t0 + gesture_us
                parts.append(
                    synthetic_events(0, 1, 3, t0=noise_t0, duration_us=gap_us, rng=rng)
                )
                t0 = noise_t0 + gap_us
            ev = {
                k: np.concatenate([e[k] for e in parts]) for k in ("t", "x", "y", "p")
            }
            with open(os.path.join(root, f"{name}.aedat"), "wb") as f:
                f.write(encode_aedat31(ev))
            with open(os.path.join(root, f"{name}_labels.csv"), "w") as f:
                f.write("\n".join(rows) + "\n")
            lists["train" if user <= num_train_users else "test"].append(
                f"{name}.aedat"
            )
    for split, names in lists.items():
        with open(os.path.join(root, f"trials_to_{split}.txt"), "w") as f:
            f.write("".join(f"{n}\n" for n in names))
    return root


def write_synthetic_npz_folder(
    root,
    class_names=("a", "b"),
    num_per_class=4,
    sensor_size=(32, 32),
    num_events=64,
    seed=0,
    store_sensor_size=True,
):
    """Writes `<root>/<class>/<i>.npz` event files (see `events.write_npz_events`).

    Args:
        root: output folder (created).
        class_names: class folder names.
        num_per_class: files per class.
        sensor_size: `(H, W)` of the events.
        num_events: events per file.
        seed: random seed.
        store_sensor_size: also store `sensor_size` in each file.

    Returns:
        `root` as a string.

    Example:
        >>> root = write_synthetic_npz_folder("/tmp/npz_events")  # doctest: +SKIP
    """
    root = os.fspath(root)
    rng = np.random.default_rng(seed)
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(num_per_class):
            ev = synthetic_events(
                label, len(class_names), num_events, sensor_size, rng=rng
            )
            _events.write_npz_events(
                os.path.join(folder, f"{i:04d}.npz"),
                ev,
                sensor_size if store_sensor_size else None,
            )
    return root
