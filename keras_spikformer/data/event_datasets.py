"""`tf.data` pipelines of event frames for Spikformer's DVS presets.

`event_frames_dataset` turns a folder of event recordings into a dataset of
`(frames [T, H, W, 2] float32, label int32)`. Frames are integrated once
(see `event_frames`) into a cache of one `.npz` per example, written
atomically, and served from it afterwards.

Layouts and splits:

- `"cifar10dvs"`: `<root>/<class>/<file>.aedat` (AEDAT 2.0), the 10 classes
  of `CIFAR10DVS_CLASS_NAMES`. There is no official split; as Spikformer's
  recipe (SpikingJelly's `split_to_train_test_set(0.9, ...)` with
  `random_split=False`), the first `ceil(n * train_fraction)` files of each
  class, names sorted as strings, are train and the rest test.
- `"dvsgesture"`: `<root>/userXX_<lighting>.aedat` (AEDAT 3.1) with
  `userXX_<lighting>_labels.csv`, and the official `trials_to_train.txt` /
  `trials_to_test.txt` (`root` may also be the folder holding `DvsGesture/`).
  Each CSV row is one example: the events with `start <= t < end`, label
  `class - 1` (0..10).
- `"npz_folder"`: `<root>/<class>/*.npz` (arrays `t`, `x`, `y`, `p`), split
  per class like CIFAR10-DVS; or `<root>/train/<class>/*.npz` and
  `<root>/test/<class>/*.npz` when both exist. The sensor size comes from
  `sensor_size=` or from a `sensor_size` array stored in the files; a file
  storing another size is refused before any is integrated, as are frame
  tensors above `event_limits.MAX_FRAME_VALUES`.
"""

import math
import os
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_spikformer.data import event_frames as _frames
from keras_spikformer.data import event_limits as _limits
from keras_spikformer.data import event_npz as _npz
from keras_spikformer.data import events as _events

__all__ = [
    "CIFAR10DVS_CLASS_NAMES",
    "DATASETS",
    "EventFrames",
    "event_frames_dataset",
]

CIFAR10DVS_CLASS_NAMES = _events.CIFAR10DVS_CLASS_NAMES
DATASETS = ("cifar10dvs", "dvsgesture", "npz_folder")


class EventFrames(NamedTuple):
    """What `event_frames_dataset` returns (unpacks as a 3-tuple).

    Attributes:
        dataset: `tf.data.Dataset` of `(frames [T, H, W, 2] float32,
            label int32)`, unbatched.
        class_names: tuple of class names, index = label.
        num_examples: number of examples in the split.
    """

    dataset: tf.data.Dataset
    class_names: tuple
    num_examples: int


class _Example(NamedTuple):
    cache_path: str
    label: int
    source: str  # the event file the example is built from


def _missing_root(root, dataset, expected):
    return FileNotFoundError(
        f"{dataset} root not found: {os.fspath(root)!r}. Expected {expected}; "
        "download and extract the dataset there, or pass the right root."
    )


def _sorted_files(folder, ext):
    return sorted(
        f
        for f in os.listdir(folder)
        if f.lower().endswith(ext) and os.path.isfile(os.path.join(folder, f))
    )


def _split_per_class(files, train_fraction, split):
    pos = math.ceil(len(files) * train_fraction)
    return files[:pos] if split == "train" else files[pos:]


def _cifar10dvs_examples(root, split, train_fraction, opts, file_order=None):
    layout = (
        "<root>/<class>/<file>.aedat with class folders "
        f"{', '.join(CIFAR10DVS_CLASS_NAMES)}"
    )
    if not os.path.isdir(root):
        raise _missing_root(root, "CIFAR10-DVS", layout)
    missing = [
        c for c in CIFAR10DVS_CLASS_NAMES if not os.path.isdir(os.path.join(root, c))
    ]
    if missing:
        raise FileNotFoundError(
            f"CIFAR10-DVS root {root!r} lacks the class folders {missing}. "
            f"Expected {layout} (extract each class zip into the root)."
        )
    out = []
    for label, name in enumerate(CIFAR10DVS_CLASS_NAMES):
        folder = os.path.join(root, name)
        files = _sorted_files(folder, ".aedat")
        if not files:
            raise FileNotFoundError(
                f"CIFAR10-DVS class folder {folder!r} holds no .aedat files; "
                "re-extract that class's archive."
            )
        if file_order is not None:
            ordered = list(file_order(name, files))
            if sorted(ordered) != files:
                raise ValueError(
                    f"file_order must reorder the files of {folder!r}, not add or "
                    "drop any."
                )
            files = ordered
        for f in _split_per_class(files, train_fraction, split):
            path = os.path.join(folder, f)
            out.append(_Example(_frames.frames_cache_path(path, **opts), label, path))
    return out, CIFAR10DVS_CLASS_NAMES


def _gesture_root(root):
    for cand in (root, os.path.join(root, "DvsGesture")):
        if os.path.isfile(os.path.join(cand, "trials_to_train.txt")) or os.path.isfile(
            os.path.join(cand, "trials_to_test.txt")
        ):
            return cand
    return root


def _dvsgesture_examples(root, split, opts):
    layout = (
        "<root>/userXX_<lighting>.aedat with userXX_<lighting>_labels.csv and "
        "trials_to_train.txt / trials_to_test.txt"
    )
    if not os.path.isdir(root):
        raise _missing_root(root, "DVS128 Gesture", layout)
    root = _gesture_root(root)
    trials = os.path.join(root, f"trials_to_{split}.txt")
    if not os.path.isfile(trials):
        raise FileNotFoundError(
            f"DVS128 Gesture split list {trials!r} not found. The official "
            "trials_to_train.txt and trials_to_test.txt ship with the dataset "
            "(DvsGesture.tar.gz) and define its split; copy them into the root."
        )
    with open(trials) as f:
        names = [ln.strip() for ln in f if ln.strip()]
    if not names:
        raise FileNotFoundError(f"DVS128 Gesture split list {trials!r} is empty.")
    out, todo = [], {}
    for name in names:
        aedat = os.path.join(root, name)
        csv_path = aedat[: -len(".aedat")] + "_labels.csv"
        if not os.path.isfile(aedat):
            raise FileNotFoundError(
                f"DVS128 Gesture recording {aedat!r} (listed in {trials!r}) is missing."
            )
        rows = _events.read_dvsgesture_labels(csv_path)
        key_base = {
            "file": _frames._fingerprint(aedat),
            "labels": _frames._fingerprint(csv_path),
            "num_frames": opts["num_frames"],
            "split_by": opts["split_by"],
        }
        stem = os.path.splitext(name)[0]
        for i, (label, start, end) in enumerate(rows):
            key = dict(key_base, row=i, window=[int(start), int(end)])
            path = _frames._cache_path(opts["cache_dir"], f"{stem}_{i:02d}", key)
            out.append(_Example(path, int(label), aedat))
            todo.setdefault(aedat, (csv_path, []))[1].append(path)
    return out, _events.DVSGESTURE_CLASS_NAMES, todo


def _npz_examples(root, split, train_fraction, opts):
    layout = "<root>/<class>/*.npz or <root>/{train,test}/<class>/*.npz"
    if not os.path.isdir(root):
        raise _missing_root(root, "npz_folder", layout)
    presplit = all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))
    base = os.path.join(root, "train") if presplit else root
    classes = sorted(
        d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))
    )
    if not classes:
        raise FileNotFoundError(
            f"npz_folder root {base!r} has no class folders; expected {layout}."
        )
    folder_root = os.path.join(root, split) if presplit else root
    out = []
    for label, name in enumerate(classes):
        folder = os.path.join(folder_root, name)
        files = _sorted_files(folder, ".npz") if os.path.isdir(folder) else []
        if not files and (not presplit or split == "train"):
            raise FileNotFoundError(
                f"npz_folder class folder {folder!r} holds no .npz event files."
            )
        if not presplit:
            files = _split_per_class(files, train_fraction, split)
        for f in files:
            path = os.path.join(folder, f)
            out.append(_Example(_frames.frames_cache_path(path, **opts), label, path))
    return out, tuple(classes)


def _npz_sensor_size(examples, sensor_size):
    """The folder's sensor: `sensor_size` if given, else the first file's."""
    if sensor_size is not None:
        return _limits.check_sensor_size(sensor_size, what="sensor_size")
    if not examples:
        return None
    stored = _npz.read_npz_sensor_size(examples[0].source)
    if stored is not None:
        return stored
    raise ValueError(
        f"npz_folder needs the sensor size: pass sensor_size=(H, W), or store a "
        f"`sensor_size` array in the files (e.g. {examples[0].source!r}; see "
        "events.write_npz_events)."
    )


def _check_npz_sensors(examples, sensor, given):
    """Refuses, before any is integrated, files stored with another sensor size."""
    for e in examples:
        stored = _npz.read_npz_sensor_size(e.source)
        if stored is not None and stored != tuple(sensor):
            origin = (
                "passed as sensor_size"
                if given
                else (f"stored in the folder's first file {examples[0].source!r}")
            )
            raise _events.EventFileError(
                f"Event file {e.source!r} stores sensor_size {stored}, but the folder "
                f"is integrated on {tuple(sensor)} ({origin}). Frames of one "
                "dataset share a sensor: keep recordings of one sensor size per "
                "folder, or re-save them with one sensor_size."
            )


def _check_image_size(image_size, sensor_size):
    if image_size is None:
        return sensor_size
    h, w = (image_size, image_size) if np.isscalar(image_size) else image_size
    h, w = int(h), int(w)
    if h < 1 or w < 1 or sensor_size[0] % h or sensor_size[1] % w:
        raise ValueError(
            f"image_size {(h, w)} must divide the sensor size {tuple(sensor_size)} "
            "(frames are shrunk by block pooling); use e.g. "
            f"{(sensor_size[0] // 2, sensor_size[1] // 2)} or image_size=None."
        )
    return h, w


def _build_gesture_caches(todo, opts, progbar):
    for aedat, (csv_path, paths) in todo.items():
        if all(os.path.isfile(p) for p in paths):
            continue
        ev = _events.read_aedat31(aedat)
        rows = _events.read_dvsgesture_labels(csv_path)
        parts = _events.split_dvsgesture_recording(ev, rows)
        for i, ((sample, _), path) in enumerate(zip(parts, paths, strict=True)):
            if os.path.isfile(path):
                continue
            frames = _frames.integrate_events_to_frames(
                sample,
                opts["num_frames"],
                opts["split_by"],
                _events.DVS128_SENSOR_SIZE,
                source=f"{aedat} (gesture row {i + 1} of {csv_path})",
            )
            _frames._atomic_save_npz(path, frames=frames)
        progbar.add(1)


def event_frames_dataset(
    root,
    dataset="cifar10dvs",
    num_frames=16,
    split_by="number",
    split="train",
    cache_dir=None,
    image_size=None,
    train_fraction=0.9,
    seed=0,
    shuffle=None,
    sensor_size=None,
    resize_mode="sum",
    orientation="spikingjelly",
    verbose=1,
    file_order=None,
):
    """A `tf.data` dataset of event frames for Spikformer's DVS presets.

    Args:
        root: dataset folder (layouts in the module docstring).
        dataset: `"cifar10dvs"`, `"dvsgesture"` or `"npz_folder"`.
        num_frames: frames per example `T` (e.g. 16 for the paper presets,
            4 for `spikformer_tiny_dvs`).
        split_by: `"number"` (equal event counts) or `"time"`.
        split: `"train"` or `"test"`.
        cache_dir: where frames are cached (default
            `event_frames.default_cache_dir()`); a subfolder per dataset.
        image_size: optional int or `(h, w)` dividing the sensor size, e.g.
            64 to feed 128x128 recordings to a 64x64 model; frames are block
            pooled (`resize_mode`).
        train_fraction: per-class train share for CIFAR10-DVS and unsplit
            npz folders (ignored for DVS128 Gesture).
        seed: shuffle seed.
        shuffle: shuffle each epoch; default True for `"train"`.
        sensor_size: `(H, W)` for `"npz_folder"` (AEDAT data are 128x128).
        resize_mode: `"sum"` (keeps raw counts) or `"mean"`.
        orientation: CIFAR10-DVS address decoding (see
            `events.decode_dvs128_addresses`).
        verbose: 1 shows a progress bar while frames are built.
        file_order: CIFAR10-DVS only: `(class_name, file_names) -> names` in
            the order the split takes them (train first); None sorts names
            as strings (SpikingJelly's recipe). `cifar10dvs_split.file_order`
            gives the shipped seeded split.

    Returns:
        `EventFrames(dataset, class_names, num_examples)`; `dataset` yields
        unbatched `(frames [T, H, W, 2] float32, label int32)`.

    Example:
        >>> data, classes, n = event_frames_dataset(
        ...     "~/data/CIFAR10DVS", "cifar10dvs", num_frames=16,
        ...     cache_dir="/tmp/frames")  # doctest: +SKIP
        >>> model.fit(data.batch(16), epochs=1)  # doctest: +SKIP
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}.")
    _frames._check_split(num_frames, split_by)
    if resize_mode not in ("sum", "mean"):
        raise ValueError(f"resize_mode must be 'sum' or 'mean', got {resize_mode!r}.")
    root = os.path.expanduser(os.fspath(root))
    cache_dir = _frames.default_cache_dir() if cache_dir is None else cache_dir
    cache_dir = os.path.join(os.path.expanduser(os.fspath(cache_dir)), dataset)
    opts = {"num_frames": num_frames, "split_by": split_by, "cache_dir": cache_dir}

    todo = None
    if dataset == "cifar10dvs":
        sensor = _events.DVS128_SENSOR_SIZE
        opts.update(sensor_size=sensor, orientation=orientation)
        examples, class_names = _cifar10dvs_examples(
            root, split, train_fraction, opts, file_order
        )
    elif dataset == "dvsgesture":
        sensor = _events.DVS128_SENSOR_SIZE
        examples, class_names, todo = _dvsgesture_examples(root, split, opts)
    else:
        examples, class_names = _npz_examples(
            root, split, train_fraction, dict(opts, orientation=orientation)
        )
        sensor = _npz_sensor_size(examples, sensor_size)
        # Re-key with the resolved sensor size.
        opts.update(sensor_size=sensor, orientation=orientation)
        examples = [
            e._replace(cache_path=_frames.frames_cache_path(e.source, **opts))
            for e in examples
        ]
    if not examples:
        raise ValueError(
            f"The {split!r} split of {dataset} at {root!r} is empty (too few files "
            f"per class for train_fraction={train_fraction}?)."
        )
    _limits.check_frame_budget(
        num_frames, sensor, "sensor_size" if sensor_size else examples[0].source
    )
    out_h, out_w = _check_image_size(image_size, sensor)

    # Build the missing cache entries, one source file at a time.
    if todo is not None:
        pending = {
            a: v for a, v in todo.items() if not all(os.path.isfile(p) for p in v[1])
        }
        if pending:
            bar = keras.utils.Progbar(len(pending), unit_name="file", verbose=verbose)
            _build_gesture_caches(pending, opts, bar)
    else:
        pending = [e for e in examples if not os.path.isfile(e.cache_path)]
        if dataset == "npz_folder":
            _check_npz_sensors(pending, sensor, given=sensor_size is not None)
        if pending:
            bar = keras.utils.Progbar(len(pending), unit_name="file", verbose=verbose)
            for e in pending:
                _frames.integrate_to_frames_cached(
                    e.source,
                    num_frames,
                    split_by,
                    cache_dir,
                    sensor_size=sensor,
                    orientation=orientation,
                )
                bar.add(1)

    def load(path):
        with np.load(path.decode() if isinstance(path, bytes) else path) as z:
            frames = z["frames"].astype(np.float32, copy=False)
        if (out_h, out_w) != tuple(frames.shape[1:3]):
            frames = _frames.pool_frames(frames, (out_h, out_w), resize_mode)
        return frames

    shape = (num_frames, out_h, out_w, 2)

    def load_tf(path, label):
        frames = tf.numpy_function(load, [path], tf.float32, stateful=False)
        return tf.ensure_shape(frames, shape), label

    paths = [e.cache_path for e in examples]
    labels = np.asarray([e.label for e in examples], dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle is None:
        shuffle = split == "train"
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return EventFrames(ds, tuple(class_names), len(examples))
