"""Readers for neuromorphic event files: AEDAT 2.0, AEDAT 3.1 and `.npz`.

Every reader returns events as a dict of equal-length numpy arrays:

- `"t"`: int64 timestamps in microseconds,
- `"x"`, `"y"`: int32 pixel coordinates (column, row),
- `"p"`: uint8 polarity in {0, 1}; a frame's channel index equals `p`
  (SpikingJelly's convention, which Spikformer's DVS recipes use).

Formats and conventions (all bit layouts from the published formats):

- **AEDAT 2.0** (jAER; CIFAR10-DVS): ASCII header lines starting with `#`
  (the first is `#!AER-DAT2.0`), then big-endian records of 8 bytes,
  `uint32 address, uint32 timestamp`. A DVS128 address holds the polarity in
  bit 0, the sensor x in bits 1-7 and the sensor y in bits 8-14.
  CIFAR10-DVS recordings are decoded by default like SpikingJelly's
  `CIFAR10DVS.load_origin_data` (see jackd/events-tfds PR #1):
  `x = 127 - y_raw, y = 127 - x_raw, p = 1 - p_raw`, which gives upright
  images. `orientation="dat2mat"` gives the MNIST-DVS `dat2mat.m` view
  (`x = 127 - x_raw, y = y_raw, p = 1 - p_raw`) and `orientation="raw"` the
  bits as stored.
- **AEDAT 3.1** (cAER/libcaer; DVS128 Gesture): ASCII header lines starting
  with `#`, the first `#!AER-DAT3.1`, the last `#!END-HEADER`; then packets of
  a 28-byte little-endian header (`int16 eventType, int16 eventSource,
  int32 eventSize, eventTSOffset, eventTSOverflow, eventCapacity,
  eventNumber, eventValid`) followed by `eventCapacity * eventSize` bytes
  (capacity equals number in files). Polarity events (`eventType == 1`, 8
  bytes) hold `uint32 data` (bit 0 valid, bit 1 polarity, bits 2-16 y,
  bits 17-31 x) and a `uint32` timestamp at `eventTSOffset`; the full
  timestamp is `timestamp | eventTSOverflow << 31`. Other packet types are
  skipped; events whose valid bit is 0 are dropped unless
  `drop_invalid=False`.
- **npz**: arrays `t`, `x`, `y`, `p` (optionally `sensor_size = [H, W]`),
  for users who bring their own recordings (see `write_npz_events`).
"""

import os

from keras_spikformer.data.aedat import (
    decode_dvs128_addresses,
    encode_dvs128_addresses,
    read_aedat2,
    read_aedat31,
    read_cifar10dvs,
    read_dvsgesture_labels,
    split_dvsgesture_recording,
)
from keras_spikformer.data.event_npz import read_npz_events, write_npz_events
from keras_spikformer.data.event_records import (
    CIFAR10DVS_CLASS_NAMES,
    DVS128_SENSOR_SIZE,
    DVSGESTURE_CLASS_NAMES,
    ORIENTATIONS,
    EventFileError,
    check_event_file,
    make_events,
    num_events,
)

__all__ = [
    "ORIENTATIONS",
    "CIFAR10DVS_CLASS_NAMES",
    "DVS128_SENSOR_SIZE",
    "DVSGESTURE_CLASS_NAMES",
    "EventFileError",
    "decode_dvs128_addresses",
    "encode_dvs128_addresses",
    "make_events",
    "num_events",
    "read_aedat2",
    "read_aedat31",
    "read_cifar10dvs",
    "read_dvsgesture_labels",
    "read_events",
    "read_npz_events",
    "split_dvsgesture_recording",
    "write_npz_events",
]


def read_events(path, orientation="spikingjelly", drop_invalid=True):
    """Reads an event file, choosing the reader from its content.

    `.npz` files go to `read_npz_events`; AEDAT files are dispatched on the
    `#!AER-DAT<version>` first line: 2.x to `read_cifar10dvs` (DVS128
    addresses), 3.x to `read_aedat31`.

    Args:
        path: event file path.
        orientation: AEDAT 2.0 orientation (see `decode_dvs128_addresses`).
        drop_invalid: AEDAT 3.1 valid-bit filtering.

    Returns:
        Event dict (`t`, `x`, `y`, `p`; `.npz` may add `sensor_size`).

    Example:
        >>> ev = read_events("cifar10_cat_3.aedat")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if path.lower().endswith(".npz"):
        return read_npz_events(path)
    check_event_file(path)
    with open(path, "rb") as f:
        first = f.readline(64)
    if first.startswith(b"#!AER-DAT3"):
        return read_aedat31(path, drop_invalid=drop_invalid)
    if first.startswith(b"#!AER-DAT2"):
        return read_cifar10dvs(path, orientation=orientation)
    if not first:
        raise EventFileError(f"Event file {path!r} is empty (0 bytes).")
    raise EventFileError(
        f"Wrong magic in {path!r}: expected '#!AER-DAT2.0' or '#!AER-DAT3.1' as "
        f"the first line (or a .npz file), found {first[:20]!r}."
    )
