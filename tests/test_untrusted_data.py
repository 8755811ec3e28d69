"""Untrusted event files and image folders (issue 29): refused or skipped and
counted before anything big is read, decoded or allocated; never a silent
wrong result."""

import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from memory_budget import run_with_budget
from PIL import Image

from keras_spikformer.data import event_datasets, event_frames, events
from keras_spikformer.data.events import EventFileError, make_events
from keras_spikformer.testing import synthetic_events as synth

pytestmark = pytest.mark.backend_independent


def _npz(path, sensor_size=None, **arrays):
    """An event .npz with 20 events on an 8x8 sensor unless overridden."""
    n = 20
    fields = {"t": np.arange(n), "x": np.arange(n) % 8, "y": np.arange(n) % 8}
    fields["p"] = np.arange(n) % 2
    fields.update(arrays)
    if sensor_size is not None:
        fields["sensor_size"] = np.asarray(sensor_size)
    np.savez(path, **fields)
    return str(path)


def _zip_of_zeros(path, count, names=("t", "x", "y", "p")):
    """An .npz of `count` uint8 zeros per field, streamed (never in memory)."""
    chunk = bytes(2**22)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name in names:
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                header = {"descr": "|u1", "fortran_order": False, "shape": (count,)}
                np.lib.format.write_array_header_1_0(f, header)
                left = count
                while left:
                    f.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
    return str(path)


# ------------------------------------------------------------ event files
def test_oversized_sensor_is_refused_before_any_frame_is_built(tmp_path):
    root = tmp_path / "npz"
    _npz(os.makedirs(root / "a") or root / "a" / "0.npz", sensor_size=[12800, 12800])
    _npz(os.makedirs(root / "b") or root / "b" / "0.npz", sensor_size=[12800, 12800])
    cache = tmp_path / "cache"
    with pytest.raises(EventFileError, match=r"0\.npz.*exceed the budget"):
        event_datasets.event_frames_dataset(
            root, "npz_folder", num_frames=16, split="train", cache_dir=cache
        )
    assert not cache.exists()
    ev = make_events(*(np.arange(4),) * 3, [0, 1, 0, 1])
    with pytest.raises(EventFileError, match="mine.*sensor_size or option"):
        event_frames.integrate_events_to_frames(
            ev, 2, sensor_size=(12800, 12800), source="mine (sensor_size or option)"
        )


@pytest.mark.parametrize(
    "stored",
    [[128, 128, 2], [[128, 128]] * 2, [0, 128], [128.0, 128.0], [128]],
    ids=["three", "2d", "zero", "float", "one"],
)
def test_bad_stored_sensor_size_names_the_file(tmp_path, stored):
    path = _npz(tmp_path / "rec.npz", sensor_size=stored)
    with pytest.raises(EventFileError, match=r"sensor_size in .*rec\.npz.*\(H, W\)"):
        events.read_events(path)


def test_bad_sensor_size_option_is_named(tmp_path):
    root = synth.write_synthetic_npz_folder(tmp_path / "npz", sensor_size=(8, 8))
    with pytest.raises(EventFileError, match=r"^sensor_size must be two positive"):
        event_datasets.event_frames_dataset(
            root, "npz_folder", num_frames=2, sensor_size=(8, 8, 2), verbose=0,
            cache_dir=tmp_path / "cache",
        )  # fmt: skip
    ev = make_events(*(np.arange(4),) * 3, [0, 1, 0, 1])
    with pytest.raises(EventFileError, match=r"two positive integers.*got \[8, 8, 2\]"):
        event_frames.integrate_events_to_frames(ev, 2, sensor_size=(8, 8, 2))


@pytest.mark.parametrize(
    "content, kind",
    [
        (b"t,x,y,p\n0,1,2,1\n", "text"),
        (b"\x93NUMPY\x01\x00" + b" " * 40, "a single .npy array"),
        (b"\x00\x01\x02\x03\xff", "bytes"),
    ],
)
def test_a_file_that_is_not_an_npz_gets_no_pickle_advice(tmp_path, content, kind):
    path = tmp_path / "rec.npz"
    path.write_bytes(content)
    with pytest.raises(EventFileError) as info:
        events.read_events(path)
    message = str(info.value)
    assert "rec.npz" in message and "is not an .npz archive" in message
    assert kind in message and "write_npz_events" in message
    assert "pickle" not in message


@pytest.mark.parametrize(
    "field, values, shown",
    [
        ("x", np.array([2**32 + 3] * 20, np.int64), "4294967299"),
        ("y", np.array([2**63 + 1] * 20, np.uint64), "9223372036854775809"),
        ("t", np.array([2**63 + 1] * 20, np.uint64), "9223372036854775809"),
        ("t", np.array([-(2**62), 2**62] * 10, np.int64), "4611686018427387904"),
    ],
    ids=["x-wraps-to-3", "y-uint64", "t-uint64", "t-overflows-split"],
)
def test_values_that_would_wrap_are_refused_naming_the_file(
    tmp_path, field, values, shown
):
    path = _npz(tmp_path / "wrap.npz", sensor_size=[8, 8], **{field: values})
    with pytest.raises(EventFileError, match=rf"wrap\.npz.*`{field}`.*{shown}"):
        events.read_events(path)


def test_extreme_timestamps_in_an_event_dict_are_refused():
    ev = {"t": np.array([-(2**62), 0, 2**62]), "x": [0] * 3, "y": [0] * 3}
    ev["p"] = [0, 1, 0]
    with pytest.raises(EventFileError, match=r"`t` in 'rec'.*beyond"):
        event_frames.integrate_events_to_frames(ev, 2, "time", (4, 4), source="rec")


def test_npz_folder_with_mixed_sensor_sizes_is_refused(tmp_path):
    root = tmp_path / "npz"
    for name, sensor in (("a", (8, 8)), ("b", (16, 16))):
        for i in range(2):
            os.makedirs(root / name, exist_ok=True)
            _npz(root / name / f"{i}.npz", sensor_size=sensor)
    kw = dict(num_frames=2, split="train", train_fraction=0.5, verbose=0)
    cache = tmp_path / "cache"
    with pytest.raises(EventFileError, match=r"b/0\.npz.*\(16, 16\).*\(8, 8\)"):
        event_datasets.event_frames_dataset(root, "npz_folder", cache_dir=cache, **kw)
    assert not cache.exists()  # refused before the first file was integrated
    with pytest.raises(EventFileError, match=r"a/0\.npz.*\(8, 8\).*passed as"):
        event_datasets.event_frames_dataset(
            root, "npz_folder", cache_dir=cache, sensor_size=(16, 16), **kw
        )
    with pytest.raises(EventFileError, match=r"a/0\.npz.*8x8 sensor.*16x16"):
        event_frames.integrate_to_frames_cached(
            root / "a" / "0.npz", 2, cache_dir=cache, sensor_size=(16, 16)
        )


# ---------------------------------------------------------- image folders
def _png(rng, size=(12, 12), mode="RGB"):
    out = io.BytesIO()
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 255, (*size, channels), np.uint8).squeeze()
    Image.fromarray(pixels, mode).save(out, "PNG")
    return out.getvalue()


def _folder(root, per_class=3, classes=("c0", "c1")):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            os.makedirs(root / split / name, exist_ok=True)
            for i in range(per_class):
                (root / split / name / f"{i}.png").write_bytes(_png(rng))
    return root


def _labels(source):
    return [os.path.relpath(p, source.paths[0].rsplit("/train/", 1)[0])
            for p in source.paths], source.labels  # fmt: skip


def test_devices_fifos_and_broken_links_are_skipped_unread(tmp_path):
    from keras_spikformer.data.augment import make_eval_preprocess
    from keras_spikformer.data.image_datasets import image_folder
    from keras_spikformer.data.image_pipeline import eval_batches
    from keras_spikformer.training.recipe import Recipe

    root = _folder(tmp_path / "data")
    c0 = root / "train" / "c0"
    os.symlink("/dev/zero", c0 / "zero.png")  # would be read forever
    os.mkfifo(c0 / "fifo.png")  # would block the reader
    os.symlink(tmp_path / "gone.png", c0 / "broken.png")
    with pytest.warns(UserWarning, match=r"not regular files': 3"):
        data = image_folder(root, (8, 8))
    assert data.num_train == 6 and data.records.train.not_regular == {
        "not regular files": 3
    }
    recipe = Recipe.from_dict({"learning_rate": 1e-3, "weight_decay": 0.0,
                               "epochs": 1, "global_batch_size": 2})  # fmt: skip
    preprocess = make_eval_preprocess(recipe, (8, 8), 2)
    batches = eval_batches(data.records.train, preprocess, 6)
    assert sum(int(x.shape[0]) for x, _ in batches) == 6
    report = data.input_report()
    assert report["train_not_regular_files"] == 3
    assert report["train_undecodable_files"] == 0


def test_symlink_loops_and_links_out_of_a_class_are_not_followed(tmp_path):
    from keras_spikformer.data.image_datasets import image_folder

    root = _folder(tmp_path / "data")
    c0 = root / "train" / "c0"
    os.symlink("..", c0 / "loop")  # c0/loop/c1/... would be labelled c0
    os.makedirs(c0 / "sub")
    (c0 / "sub" / "x.png").write_bytes((c0 / "0.png").read_bytes())
    os.symlink("sub", c0 / "alias")  # inside c0: followed once, as `alias`
    with pytest.warns(
        UserWarning, match="leaving the class folder': 1, 'folders reached twice"
    ):
        data = image_folder(root, (8, 8))
    source = data.records.train
    names, labels = _labels(source)
    assert names == [
        "train/c0/0.png", "train/c0/1.png", "train/c0/2.png",
        "train/c0/alias/x.png", "train/c1/0.png", "train/c1/1.png", "train/c1/2.png",
    ]  # fmt: skip
    assert labels == [0, 0, 0, 0, 1, 1, 1]
    assert source.not_regular == {
        "folder links leaving the class folder": 1,
        "folders reached twice (links, loops)": 1,
    }


def _png_bomb(side):
    """A grey PNG of `side` x `side` zeros: a few hundred KB, `side**2` bytes decoded."""
    compress = zlib.compressobj(1)
    row = bytes(1 + side)  # filter byte + pixels
    data = b"".join(compress.compress(row * 200) for _ in range(side // 200))
    data += compress.flush()

    def chunk(kind, body):
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))  # fmt: skip


def test_crafted_files_are_refused_within_a_memory_budget(tmp_path):
    """One child process (one TensorFlow import) for all crafted files."""
    many = _zip_of_zeros(tmp_path / "many.npz", 4 * 10**7)  # 0.7 MB on disk
    wide = _npz(tmp_path / "wide.npz", sensor_size=[4096, 8192])  # 3 KB
    root = _folder(tmp_path / "data", per_class=1)
    (root / "train" / "c0" / "bomb.png").write_bytes(_png_bomb(10000))  # 100 M px
    setup = f"""
    from keras_spikformer.data import event_frames
    from keras_spikformer.data.image_datasets import image_folder
    from keras_spikformer.data.image_pipeline import eval_batches
    from keras_spikformer.data.augment import make_eval_preprocess
    from keras_spikformer.training.recipe import Recipe
    recipe = Recipe.from_dict({{"learning_rate": 1e-3, "weight_decay": 0.0,
                               "epochs": 1, "global_batch_size": 2}})
    preprocess = make_eval_preprocess(recipe, (8, 8), 2, channels=1)
    data = image_folder({str(root)!r}, (8, 8), channels=1)
    for _ in eval_batches(data.records.test, preprocess, 2):  # warm TF up
        pass
    """
    code = f"""
    for path in ({many!r}, {wide!r}):
        try:
            event_frames.integrate_to_frames_cached(path, 3, cache_dir={str(tmp_path)!r})
        except Exception as e:
            outcome(f"{{type(e).__name__}}: {{e}}")
    batches = eval_batches(data.records.train, preprocess, 4)
    outcome(sum(int(x.shape[0]) for x, _ in batches))
    outcome(data.input_report()["train_undecodable_files"])
    """
    # Without the checks, here: 800 MiB for the events, 110 MiB for this grey
    # bomb (the 390 KB 20000x20000 RGB PNGs: 1.2 GB each).
    outcomes, _ = run_with_budget(code, 64, setup=setup, backend="tensorflow")
    assert len(outcomes) == 4, outcomes
    assert "EventFileError" in outcomes[0] and "many.npz" in outcomes[0]
    assert "40,000,000 events" in outcomes[0] and "MAX_EVENTS_PER_FILE" in outcomes[0]
    assert "EventFileError" in outcomes[1] and "wide.npz" in outcomes[1]
    assert "3 x 4096 x 8192 x 2" in outcomes[1] and "MAX_FRAME_VALUES" in outcomes[1]
    assert outcomes[2:] == ["2", "1"]  # the bomb is skipped unread and counted


def _encoded(rng, fmt):
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (10, 14, 3), np.uint8)).save(out, fmt)
    return out.getvalue()


def test_rgb_folder_trains_a_grey_preset(tmp_path):
    """`train --preset spikformer_tiny_digits --dataset folder` on RGB images
    (its eval resize is "nearest", which kept uint8 and crashed)."""
    import keras

    from keras_spikformer.training.trainer import train

    class Stop(Exception):
        pass

    class StopAtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise Stop()

    root = _folder(tmp_path / "data", per_class=2)
    rng = np.random.default_rng(1)
    for i, fmt in enumerate(("JPEG", "GIF", "BMP")):
        suffix = {"JPEG": "jpg"}.get(fmt, fmt.lower())
        (root / "train" / "c1" / f"rgb{i}.{suffix}").write_bytes(_encoded(rng, fmt))
    with pytest.raises(Stop):
        train("spikformer_tiny_digits", "folder", tmp_path / "run",
              data_dir=root, num_classes=2, batch_size=7, epochs=1,
              callbacks=[StopAtStart()])  # fmt: skip

    from keras_spikformer.data.augment import make_eval_preprocess
    from keras_spikformer.data.image_datasets import image_folder
    from keras_spikformer.data.image_pipeline import eval_batches
    from keras_spikformer.training.recipe import Recipe

    data = image_folder(root, (16, 16), channels=1)
    recipe = Recipe.from_preset("spikformer_tiny_digits")
    preprocess = make_eval_preprocess(recipe, (16, 16), 2, channels=1)
    shapes = [
        tuple(x.shape) for x, _ in eval_batches(data.records.train, preprocess, 7)
    ]
    assert shapes == [(7, 16, 16, 1)]  # PNG, JPEG, GIF and BMP all decoded to grey
    assert data.input_report()["train_undecodable_files"] == 0


def test_file_names_that_are_not_utf8(tmp_path):
    from keras_spikformer.data.image_datasets import image_folder

    root = _folder(tmp_path / "data")
    c0 = os.fsencode(root / "train" / "c0")
    with open(os.path.join(c0, b"caf\xe9.png"), "wb") as f:  # Latin-1 name
        f.write(_png(np.random.default_rng(2)))
    data = image_folder(root, (8, 8))
    assert data.num_train == 7
    assert sum(1 for _ in data.train) == 7  # read and decoded
    os.makedirs(os.path.join(os.fsencode(root / "test"), b"\xff"))
    with pytest.raises(
        ValueError, match=r"Class folder b'.*test/\\xff'.*not valid UTF-8"
    ):
        image_folder(root, (8, 8))


def test_event_files_that_are_not_regular_or_too_big_are_refused_unread(tmp_path):
    fifo = tmp_path / "live.npz"
    os.mkfifo(fifo)  # opening it would block
    with pytest.raises(EventFileError, match=r"live\.npz.*not a regular file"):
        events.read_events(fifo)
    huge = tmp_path / "huge.aedat"  # sparse: 270 MB that take no disk
    with open(huge, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n")
        f.truncate(8 * 2**25 + 2**21)
    with pytest.raises(EventFileError, match=r"huge\.aedat.*270,532,608 bytes.*budget"):
        events.read_events(huge)
