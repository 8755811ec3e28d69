"""Untrusted preprocessor files, images and export flags (issue 29, items 2, 8, 9,
12, 15-18): a clear error naming the problem and the fix, before heavy work."""

import json
import shutil
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from memory_budget import run_with_budget

from keras_spikformer import QKFormer, Spikformer
from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.presets import PresetError

ZOO = Path(__file__).resolve().parents[1] / "zoo"
backend_independent = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def model():
    return Spikformer.from_preset("spikformer_tiny_digits")


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.round(data.images[:64, ..., None] * (255.0 / 16.0)).astype("uint8")
    return images, data.target[:64]


def crafted_preset(tmp_path, **preprocessor):
    """A copy of the shipped digits preset whose preprocessor.json says `preprocessor`."""
    directory = tmp_path / "crafted"
    shutil.copytree(ZOO / "spikformer_tiny_digits", directory)
    path = directory / "preprocessor.json"
    data = json.loads(path.read_text())
    data["config"].update(preprocessor)
    path.write_text(json.dumps(data))
    return directory


# === preprocessor.json: bounded and finite (items 2 and 9) ===


@backend_independent
def test_a_tiny_crop_pct_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"crop_pct.*0\.25, 1.*\(4000, 4000\)"):
        ImageClassifierPreprocessor((8, 8), crop_pct=0.002)
    config = ImageClassifierPreprocessor((8, 8)).get_config()
    with pytest.raises(ValueError, match="crop_pct"):
        ImageClassifierPreprocessor.from_config({**config, "crop_pct": 0.002})
    for crop_pct in (0, -1, 1.5):
        with pytest.raises(ValueError, match=r"`crop_pct` must be in \[0\.25, 1\]"):
            ImageClassifierPreprocessor((8, 8), crop_pct=crop_pct)
    with pytest.raises(ValueError, match="above 4096 pixels a side"):
        ImageClassifierPreprocessor((4000, 4000), crop_pct=0.5)


@backend_independent
def test_a_tiny_crop_pct_preset_is_refused_before_it_allocates(tmp_path):
    preset = crafted_preset(tmp_path, crop_pct=0.002)
    code = f"""
    import numpy as np
    model = Spikformer.from_preset({str(preset)!r})
    model.predict(np.zeros((64, 8, 8, 1), "uint8"), verbose=0)
    outcome("predicted")
    """
    setup = "from keras_spikformer import Spikformer\n"
    outcomes, _ = run_with_budget(code, 400, setup=setup, backend="tensorflow")
    assert len(outcomes) == 1 and "PresetError" in outcomes[0], outcomes
    assert "preprocessor.json" in outcomes[0] and "crop_pct" in outcomes[0]


@backend_independent
@pytest.mark.parametrize(
    "key, value, match",
    [
        ("scale", float("nan"), "`scale` must be a finite number"),
        ("scale", float("inf"), "`scale` must be a finite number"),
        ("scale", 0.0, "`scale` must be positive"),
        ("mean", [float("nan")], "`mean` must be a finite number"),
        ("std", [float("inf")], "`std` must be a finite number"),
        ("std", [float("nan")], "`std` must be a finite number"),
        ("std", [0.0], "`std` must be positive"),
        ("crop_pct", float("nan"), "`crop_pct` must be a finite number"),
    ],
)
def test_non_finite_preprocessor_values_are_refused(tmp_path, key, value, match):
    config = {**ImageClassifierPreprocessor((8, 8), mean=[0.0], std=[1.0]).get_config()}
    with pytest.raises(ValueError, match=match):
        ImageClassifierPreprocessor.from_config({**config, key: value})
    # In a preset file, non-finite JSON is refused when the file is parsed.
    with pytest.raises(PresetError, match=rf"preprocessor\.json.*({key}|finite)"):
        Spikformer.from_preset(crafted_preset(tmp_path, **{key: value}))


# === predict: scaled by dtype, finite, clear errors (items 8, 16, 17, 18) ===


def test_uint16_images_are_scaled_like_uint8(model, digits):
    images, labels = digits
    expected = model.predict(images, verbose=0)
    import tensorflow as tf

    uint16 = images.astype("uint16") * 257
    got = model.predict(uint16, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    dataset = tf.data.Dataset.from_tensor_slices(uint16).batch(32)  # in the pipeline
    got = model.predict(dataset, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert (expected.argmax(-1) == labels).mean() > 0.8


def test_float_images_in_0_1_warn_what_the_preprocessor_expects(model, digits):
    images = digits[0][:8]
    with pytest.warns(
        UserWarning, match=r"expects pixels in 0\.\.255.*multiply them by 255"
    ):
        model.predict(images / 255.0, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(images.astype("float32"), verbose=0)  # 0..255 floats: fine
    assert not [w for w in caught if "expects pixels" in str(w.message)]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_are_refused(model, bad):
    images = np.full((3, 8, 8, 1), 100.0, "float32")
    images[1, 2, 3] = bad
    with pytest.raises(
        ValueError,
        match=r"1 of the 192 pixel values are NaN or infinite \(first in image 1\)",
    ):
        model.predict(images, verbose=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(np.full((2, 8, 8, 1), np.nan), verbose=0)


@pytest.mark.parametrize(
    "images, match",
    [
        (
            np.zeros((0, 8, 8, 1), "uint8"),
            r"empty batch of images \(shape \(0, 8, 8, 1\)\)",
        ),
        (np.zeros((2, 8, 8, 1), bool), r"are bool .*astype\('uint8'\) \* 255"),
        (
            np.zeros((2, 0, 8, 1), "uint8"),
            r"zero height or width \(shape \(2, 0, 8, 1\)",
        ),
        (np.array(["a.png", "b.png"]), r"are strings .*must be loaded first"),
        (["a.png", "b.png"], r"are strings .*must be loaded first"),
        ([], "empty list of images"),
        (
            np.zeros((5, 32, 32), "uint8"),
            r"batch of 5 grey-scale 32x32 images.*images\[\.\.\., None\]",
        ),
    ],
    ids=[
        "empty",
        "bool",
        "zero_height",
        "strings",
        "string_list",
        "empty_list",
        "grey_batch",
    ],
)
def test_bad_images_get_clear_errors(model, images, match):
    with pytest.raises(ValueError, match=match):
        model.predict(images, verbose=0)


def test_a_string_dataset_gets_a_clear_error(model):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(["a.png", "b.png"]).batch(2)
    with pytest.raises(ValueError, match=r"dataset's images are strings.*loaded first"):
        model.predict(dataset, verbose=0)


@backend_independent
def test_a_grey_batch_on_an_rgb_model_says_how_to_fix_it():
    pre = ImageClassifierPreprocessor((8, 8))
    with pytest.raises(
        ValueError, match=r"3-channel.*batch of 5 grey-scale 32x32.*np\.repeat"
    ):
        pre.check_images(np.zeros((5, 32, 32), "uint8"), channels=3)


def test_the_input_shape_is_checked_on_every_call(model):
    good = np.zeros((4, 16, 16, 1), "float32")
    with model.preprocessing_disabled():
        assert model.predict(good, verbose=0).shape == (4, 10)
        for shape in [(4, 9, 9, 1), (4, 16, 16, 3), (0, 16, 16, 1)]:
            with pytest.raises(
                ValueError, match=r"shape \(batch, 16, 16, 1\)|empty batch"
            ):
                model.predict(np.zeros(shape, "float32"), verbose=0)
        assert model.predict(good, verbose=0).shape == (4, 10)


# === export: flags and files (items 12, 15, 18) ===


@backend_independent
@pytest.mark.parametrize("batch_size", [0, -2, 2.5, True, "8"])
def test_a_bad_export_batch_size_is_refused(model, tmp_path, batch_size):
    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match="`batch_size` must be"):
        model.export(str(path), format="onnx", batch_size=batch_size)
    assert not path.exists()


@backend_independent
def test_export_never_writes_over_files_without_overwrite(model, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.export(str(onnx_file), format="onnx", batch_size=2)
    user_dir = tmp_path / "photos"
    user_dir.mkdir()
    (user_dir / "a.jpg").write_bytes(b"photo")
    for format in ("tf_saved_model", "onnx"):
        for overwrite in (False, True):
            with pytest.raises(
                FileExistsError, match="non-empty directory|is a directory"
            ):
                model.export(str(user_dir), format=format, overwrite=overwrite)
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "saved_model.pb").write_bytes(b"old")
    with pytest.raises(
        FileExistsError, match="already holds a SavedModel.*overwrite=True"
    ):
        model.export(str(tmp_path / "served"))
    assert onnx_file.read_bytes() == b"mine"
    assert sorted(p.name for p in user_dir.iterdir()) == ["a.jpg"]


# As tests/test_export.py: tf2onnx exports are checked in the TensorFlow pass.
tf2onnx_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf2onnx path"
)


def onnx_matches_keras(model, path, batch_size):
    """ONNX Runtime loads `path` and gives `model`'s logits."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path))
    images = np.random.RandomState(0).rand(batch_size, *model.image_shape)
    images = images.astype("float32")
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    with model.preprocessing_disabled():
        expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)


@pytest.mark.large
@tf2onnx_only
def test_onnx_export_overwrites_only_when_asked(model, tmp_path):
    pytest.importorskip("tf2onnx")
    path = tmp_path / "digits.onnx"
    path.write_bytes(b"old")
    model.export(str(path), format="onnx", overwrite=True)
    onnx_matches_keras(model, path, batch_size=3)


@pytest.fixture(scope="module")
def qkformer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return QKFormer.from_preset(
            "qkformer_tiny_cifar", load_weights=False, preprocessor=None
        )


@backend_independent  # refused before any backend-specific work
def test_qkformer_free_batch_onnx_export_is_refused_with_the_reason(qkformer, tmp_path):
    path = tmp_path / "qk.onnx"
    with pytest.raises(
        ValueError,
        match=r"batch-spanning neuron.*ONNX Runtime cannot load.*batch_size=N",
    ):
        qkformer.export(str(path), format="onnx")
    assert not path.exists()


@pytest.mark.large
@tf2onnx_only
def test_qkformer_fixed_batch_onnx_export_loads_in_onnx_runtime(qkformer, tmp_path):
    pytest.importorskip("tf2onnx")
    path = tmp_path / "qk.onnx"
    qkformer.export(str(path), format="onnx", batch_size=2)
    onnx_matches_keras(qkformer, path, batch_size=2)
