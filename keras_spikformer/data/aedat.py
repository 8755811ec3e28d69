"""AEDAT 2.0 (CIFAR10-DVS) and 3.1 (DVS128 Gesture) readers, DVS128 address coding."""

import csv
import os

import numpy as np

from keras_spikformer.data.event_records import (
    DVSGESTURE_CLASS_NAMES,
    ORIENTATIONS,
    EventFileError,
    read_bytes,
)

# The 28-byte header of every AEDAT 3.1 event packet.
AEDAT31_PACKET_HEADER = np.dtype(
    [
        ("eventType", "<i2"),
        ("eventSource", "<i2"),
        ("eventSize", "<i4"),
        ("eventTSOffset", "<i4"),
        ("eventTSOverflow", "<i4"),
        ("eventCapacity", "<i4"),
        ("eventNumber", "<i4"),
        ("eventValid", "<i4"),
    ]
)
_POLARITY_EVENT = 1  # AEDAT 3.1 packet type of polarity events


def _split_header(data, path, stop_line=None):
    """Returns `(header_lines, body_offset)` for `#`-prefixed ASCII headers."""
    pos = 0
    lines = []
    while data[pos : pos + 1] == b"#":
        end = data.find(b"\n", pos)
        if end < 0:
            raise EventFileError(
                f"Bad header in {path!r}: the header line starting at byte {pos} "
                "never ends (no newline); the file is truncated or not AEDAT."
            )
        line = data[pos:end].rstrip(b"\r").decode("latin-1")
        lines.append(line)
        pos = end + 1
        if stop_line is not None and line == stop_line:
            return lines, pos
    if stop_line is not None:
        raise EventFileError(
            f"Bad header in {path!r}: no {stop_line!r} line ends the ASCII "
            "header; the file is truncated or not AEDAT 3.1."
        )
    return lines, pos


def _aedat_version(lines):
    if lines and lines[0].startswith("#!AER-DAT"):
        return lines[0][len("#!AER-DAT") :].strip()
    return None


def _check_magic(path, lines, major, reader):
    version = _aedat_version(lines)
    if version is None:
        first = lines[0] if lines else "<binary data, no '#' header>"
        raise EventFileError(
            f"Wrong magic in {path!r}: expected a first line '#!AER-DAT{major}.x', "
            f"found {first[:40]!r}. Is this an AEDAT {major} file?"
        )
    if not version.startswith(f"{major}."):
        hint = {"2": "read_aedat2/read_cifar10dvs", "3": "read_aedat31"}.get(
            version[:1], "a reader for that version"
        )
        raise EventFileError(
            f"Wrong AEDAT version in {path!r}: {reader} reads AEDAT {major}.x, "
            f"the file is AEDAT {version}; use {hint}."
        )


def read_aedat2(path):
    """Reads the raw records of an AEDAT 2.0 (jAER) file.

    Args:
        path: path of a `.aedat` file whose first line is `#!AER-DAT2.0`.

    Returns:
        `(addresses, timestamps)`: uint32 and int64 arrays, one per record.

    Raises:
        EventFileError: missing or empty file, wrong magic, unterminated
            header, truncated record, or no records.

    Example:
        >>> addr, ts = read_aedat2("cifar10_airplane_0.aedat")  # doctest: +SKIP
    """
    path = os.fspath(path)
    data = read_bytes(path)
    lines, offset = _split_header(data, path)
    _check_magic(path, lines, "2", "read_aedat2")
    body = len(data) - offset
    if body % 8:
        raise EventFileError(
            f"Truncated record in {path!r}: {body} bytes follow the header, not "
            f"a multiple of the 8-byte record (last {body % 8} bytes incomplete); "
            "the file is cut short, re-download it."
        )
    if body == 0:
        raise EventFileError(f"No events in {path!r}: the file holds only a header.")
    words = np.frombuffer(data, dtype=">u4", offset=offset).reshape(-1, 2)
    return words[:, 0].astype(np.uint32), words[:, 1].astype(np.int64)


def decode_dvs128_addresses(addresses, orientation="spikingjelly"):
    """Decodes DVS128 AEDAT 2.0 addresses to `(x, y, p)`.

    Address bits: polarity 0, sensor x 1-7, sensor y 8-14.

    Args:
        addresses: integer array of raw addresses.
        orientation: `"spikingjelly"` (default; `x = 127 - y_raw`,
            `y = 127 - x_raw`, `p = 1 - p_raw`, as SpikingJelly's CIFAR10-DVS
            loader), `"dat2mat"` (`x = 127 - x_raw`, `y = y_raw`,
            `p = 1 - p_raw`) or `"raw"` (bits as stored).

    Returns:
        `(x, y, p)` int32, int32, uint8 arrays.

    Example:
        >>> decode_dvs128_addresses(np.array([(5 << 8) | (3 << 1) | 1]), "raw")
        (array([3], dtype=int32), array([5], dtype=int32), array([1], dtype=uint8))
    """
    a = np.asarray(addresses).astype(np.int64)
    p_raw = a & 0x1
    x_raw = (a >> 1) & 0x7F
    y_raw = (a >> 8) & 0x7F
    if orientation == "spikingjelly":
        x, y, p = 127 - y_raw, 127 - x_raw, 1 - p_raw
    elif orientation == "dat2mat":
        x, y, p = 127 - x_raw, y_raw, 1 - p_raw
    elif orientation == "raw":
        x, y, p = x_raw, y_raw, p_raw
    else:
        raise ValueError(
            f"Unknown orientation {orientation!r}; use one of {ORIENTATIONS}."
        )
    return x.astype(np.int32), y.astype(np.int32), p.astype(np.uint8)


def encode_dvs128_addresses(x, y, p, orientation="spikingjelly"):
    """Inverse of `decode_dvs128_addresses`: `(x, y, p)` to uint32 addresses.

    Args:
        x: pixel columns in [0, 127].
        y: pixel rows in [0, 127].
        p: polarities in {0, 1}.
        orientation: as in `decode_dvs128_addresses`.

    Returns:
        uint32 array of addresses.

    Example:
        >>> encode_dvs128_addresses([3], [5], [1], "raw")
        array([1287], dtype=uint32)
    """
    x, y, p = (np.asarray(a).astype(np.int64) for a in (x, y, p))
    if x.size and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) > 127):
        raise ValueError("DVS128 coordinates must lie in [0, 127].")
    if orientation == "spikingjelly":
        x_raw, y_raw, p_raw = 127 - y, 127 - x, 1 - p
    elif orientation == "dat2mat":
        x_raw, y_raw, p_raw = 127 - x, y, 1 - p
    elif orientation == "raw":
        x_raw, y_raw, p_raw = x, y, p
    else:
        raise ValueError(
            f"Unknown orientation {orientation!r}; use one of {ORIENTATIONS}."
        )
    return ((y_raw << 8) | (x_raw << 1) | p_raw).astype(np.uint32)


def read_cifar10dvs(path, orientation="spikingjelly"):
    """Reads one CIFAR10-DVS recording (AEDAT 2.0, DVS128 addresses).

    Args:
        path: path of a CIFAR10-DVS `.aedat` file.
        orientation: see `decode_dvs128_addresses`; the default matches
            SpikingJelly, which Spikformer's CIFAR10-DVS recipe uses.

    Returns:
        Event dict (`t`, `x`, `y`, `p`), coordinates in [0, 127].

    Example:
        >>> ev = read_cifar10dvs("airplane/cifar10_airplane_0.aedat")  # doctest: +SKIP
    """
    addresses, timestamps = read_aedat2(path)
    x, y, p = decode_dvs128_addresses(addresses, orientation)
    return {"t": timestamps, "x": x, "y": y, "p": p}


def read_aedat31(path, drop_invalid=True):
    """Reads the polarity events of an AEDAT 3.1 (cAER) file.

    Args:
        path: path of a `.aedat` file whose first line is `#!AER-DAT3.1`
            (e.g. a DVS128 Gesture `userXX_<lighting>.aedat`).
        drop_invalid: drop events whose valid bit (bit 0) is 0.

    Returns:
        Event dict (`t`, `x`, `y`, `p`) in file order.

    Raises:
        EventFileError: missing or empty file, wrong magic, header without
            `#!END-HEADER`, malformed or truncated packet, no polarity events.

    Example:
        >>> ev = read_aedat31("DvsGesture/user01_led.aedat")  # doctest: +SKIP
    """
    path = os.fspath(path)
    data = read_bytes(path)
    lines, pos = _split_header(data, path, stop_line="#!END-HEADER")
    _check_magic(path, lines, "3", "read_aedat31")
    size = len(data)
    hsize = AEDAT31_PACKET_HEADER.itemsize
    chunks = {"t": [], "x": [], "y": [], "p": []}
    while pos < size:
        if size - pos < hsize:
            raise EventFileError(
                f"Truncated packet header in {path!r} at byte {pos}: "
                f"{size - pos} of {hsize} bytes; the file is cut short."
            )
        h = np.frombuffer(data, AEDAT31_PACKET_HEADER, count=1, offset=pos)[0]
        ev_size, capacity, number = (
            int(h["eventSize"]),
            int(h["eventCapacity"]),
            int(h["eventNumber"]),
        )
        ts_offset = int(h["eventTSOffset"])
        if ev_size <= 0 or capacity < 0 or not 0 <= number <= capacity:
            raise EventFileError(
                f"Malformed packet header in {path!r} at byte {pos}: eventSize="
                f"{ev_size}, eventCapacity={capacity}, eventNumber={number}."
            )
        pos += hsize
        payload = capacity * ev_size
        if size - pos < payload:
            raise EventFileError(
                f"Truncated packet in {path!r} at byte {pos}: the header announces "
                f"{payload} bytes of events, only {size - pos} remain."
            )
        if int(h["eventType"]) == _POLARITY_EVENT and number:
            if ev_size < 8 or not 4 <= ts_offset <= ev_size - 4:
                raise EventFileError(
                    f"Malformed polarity packet in {path!r} at byte {pos - hsize}: "
                    f"eventSize={ev_size}, eventTSOffset={ts_offset}."
                )
            raw = np.frombuffer(data, np.uint8, count=number * ev_size, offset=pos)
            raw = raw.reshape(number, ev_size)
            word = np.ascontiguousarray(raw[:, 0:4]).view("<u4")[:, 0]
            ts = np.ascontiguousarray(raw[:, ts_offset : ts_offset + 4]).view("<u4")
            t = ts[:, 0].astype(np.int64) | (np.int64(h["eventTSOverflow"]) << 31)
            keep = (word & 0x1).astype(bool) if drop_invalid else slice(None)
            chunks["t"].append(t[keep])
            chunks["x"].append(((word >> 17) & 0x7FFF)[keep].astype(np.int32))
            chunks["y"].append(((word >> 2) & 0x7FFF)[keep].astype(np.int32))
            chunks["p"].append(((word >> 1) & 0x1)[keep].astype(np.uint8))
        pos += payload
    if not chunks["t"] or sum(c.size for c in chunks["t"]) == 0:
        raise EventFileError(
            f"No events in {path!r}: it holds no (valid) polarity events (eventType 1)."
        )
    return {k: np.concatenate(v) for k, v in chunks.items()}


def read_dvsgesture_labels(path):
    """Reads a DVS128 Gesture `userXX_<lighting>_labels.csv`.

    Args:
        path: CSV with header `class,startTime_usec,endTime_usec`, labels 1..11.

    Returns:
        int64 array `[n, 3]` of `(label, start_usec, end_usec)`, labels 0..10.

    Example:
        >>> rows = read_dvsgesture_labels("user01_led_labels.csv")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EventFileError(
            f"Label file not found: {path!r}. Each DVS128 Gesture recording "
            "`userXX_<lighting>.aedat` needs its `userXX_<lighting>_labels.csv`."
        )
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise EventFileError(f"Label file {path!r} is empty.")
    header = [c.strip() for c in rows[0]]
    if header[:3] != ["class", "startTime_usec", "endTime_usec"]:
        raise EventFileError(
            f"Bad header in label file {path!r}: expected "
            f"'class,startTime_usec,endTime_usec', found {','.join(header)!r}."
        )
    out = []
    for i, row in enumerate(rows[1:], start=2):
        try:
            label, start, end = (int(c) for c in row[:3])
        except ValueError:
            raise EventFileError(
                f"Bad row {i} in label file {path!r}: {row!r} (need 3 integers)."
            ) from None
        if not 1 <= label <= len(DVSGESTURE_CLASS_NAMES) or end <= start:
            raise EventFileError(
                f"Bad row {i} in label file {path!r}: {row!r} (labels are 1..11 "
                "and endTime_usec must exceed startTime_usec)."
            )
        out.append((label - 1, start, end))
    if not out:
        raise EventFileError(f"Label file {path!r} lists no gestures.")
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def split_dvsgesture_recording(events, labels):
    """Cuts a DVS128 Gesture recording into its labelled gestures.

    A gesture keeps the events with `start_usec <= t < end_usec` (as
    SpikingJelly's `DVS128Gesture.split_aedat_files_to_np`).

    Args:
        events: event dict of a whole recording.
        labels: `[n, 3]` array from `read_dvsgesture_labels`.

    Returns:
        List of `(events, label)` pairs, one per label row, in row order.

    Example:
        >>> parts = split_dvsgesture_recording(ev, rows)  # doctest: +SKIP
    """
    t = np.asarray(events["t"])
    out = []
    for label, start, end in np.asarray(labels).reshape(-1, 3):
        mask = (t >= start) & (t < end)
        out.append(({k: np.asarray(v)[mask] for k, v in events.items()}, int(label)))
    return out
