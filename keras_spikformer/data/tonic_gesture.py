"""tonic's copy of DVS128 Gesture (one `.npy` per gesture) as an npz event folder.

IBM's `DvsGesture.tar.gz` has no direct link; tonic publishes a re-cut copy
on figshare with one: `ibmGestureTrain.tar.gz` and `ibmGestureTest.tar.gz`,
laid out as `ibmGesture{Train,Test}/<userXX_lighting>/<label>.npy`, each an
`[N, 4]` array of `x, y, polarity, t` with `t` in milliseconds (the official
train/test users; labels 0..10). `convert_tonic_gesture` writes each gesture
as `<out>/{train,test}/<label:02d>/<recording>_<label>.npz` (t in
microseconds, sensor 128x128), the `npz_folder` layout of `event_datasets`,
so the usual reader and frame cache take over. Every file is checked before
use: no pickles, a numeric `[N, 4]` array within the event budget,
coordinates on the 128x128 sensor, polarity 0/1, finite times.
"""

import os
import re

import numpy as np

from keras_spikformer.data import event_limits as _limits
from keras_spikformer.data.event_npz import write_npz_events
from keras_spikformer.data.event_records import make_events

SPLIT_FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
SENSOR = (128, 128)
NUM_CLASSES = 11
_LABEL_FILE = re.compile(r"^(\d{1,2})\.npy$")


def read_tonic_npy(path):
    """The events of one of tonic's gesture `.npy` files, checked.

    Returns:
        An event dict (`t` in microseconds, int64).

    Raises:
        EventFileError: anything but a numeric `[N, 4]` array of events on
            the 128x128 sensor within `event_limits.MAX_EVENTS_PER_FILE`.
    """
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise _limits.EventFileError(
            f"{path} is not a plain .npy array ({error})."
        ) from None
    if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in "iuf":
        raise _limits.EventFileError(
            f"{path} holds a {array.dtype} array of shape {array.shape}; tonic's "
            "gesture files hold [N, 4] numbers (x, y, polarity, t in ms)."
        )
    _limits.check_event_count(array.shape[0], path)
    x, y, p, t_ms = (np.asarray(array[:, i], np.float64) for i in range(4))
    bad = (
        not np.all(np.isfinite(array))
        or np.any((x < 0) | (x >= SENSOR[1]) | (y < 0) | (y >= SENSOR[0]))
        or np.any((p != 0) & (p != 1))
        or np.any(np.abs(t_ms) * 1000 > _limits.MAX_ABS_TIMESTAMP)
    )
    if bad:
        raise _limits.EventFileError(
            f"{path} has events off the 128x128 sensor, a polarity other than 0/1, "
            "or non-finite or huge times; it is not one of tonic's gesture files."
        )
    t = np.round(t_ms * 1000).astype(np.int64)
    order = np.argsort(t, kind="stable")
    x, y, p = (a[order].astype(np.int64) for a in (x, y, p))
    return make_events(t[order], x, y, p)


def convert_tonic_gesture(root, out):
    """Writes tonic's extracted gesture folders under `root` as npz folders in `out`.

    Args:
        root: the folder holding `ibmGestureTrain/` and `ibmGestureTest/`.
        out: the output folder (`out/train/<label>/...`, `out/test/...`).

    Returns:
        The number of examples written.

    Example:
    >>> convert_tonic_gesture("~/.cache/keras_spikformer/datasets/dvsgesture",
    ...                       "~/.cache/keras_spikformer/datasets/dvsgesture/npz")  # doctest: +SKIP
    1342
    """
    written = 0
    for split, folder in SPLIT_FOLDERS.items():
        base = os.path.join(root, folder)
        if not os.path.isdir(base):
            raise FileNotFoundError(f"{base} is missing: extract {folder}.tar.gz.")
        for label in range(NUM_CLASSES):
            os.makedirs(os.path.join(out, split, f"{label:02d}"), exist_ok=True)
        for recording in sorted(os.listdir(base)):
            rec_dir = os.path.join(base, recording)
            if not os.path.isdir(rec_dir) or os.path.islink(rec_dir):
                continue
            for name in sorted(os.listdir(rec_dir)):
                match = _LABEL_FILE.match(name)
                path = os.path.join(rec_dir, name)
                if not match or not os.path.isfile(path) or os.path.islink(path):
                    continue
                label = int(match.group(1))
                if label >= NUM_CLASSES:
                    raise _limits.EventFileError(
                        f"{path}: label {label} is not a DVS128 Gesture class (0..10)."
                    )
                target = os.path.join(
                    out, split, f"{label:02d}", f"{recording}_{label}.npz"
                )
                write_npz_events(target, read_tonic_npy(path), SENSOR)
                written += 1
    return written
