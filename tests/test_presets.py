"""Preset directories, the preprocessor, weight transfer by path, bad preset files."""

import json
import shutil
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer import (
    ImageClassifier,
    Spikformer,
    SpikformerBackbone,
    SpikformerImageClassifierPreprocessor,
)
from keras_spikformer import presets as preset_io
from keras_spikformer.convert import read_state_dict, reference_variable_map
from keras_spikformer.convert.converter import convert_checkpoint
from keras_spikformer.testing import run_backbone_test, run_preset_test, run_task_test
from keras_spikformer.training.trainer import evaluate

TINY = {
    "image_shape": (32, 32, 3), "patch_size": 4, "hidden_dim": 32, "num_layers": 1,
    "num_heads": 4, "num_timesteps": 2,
}  # fmt: skip
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
PRESET_FILES = ["config.json", "metadata.json", "model.weights.h5", "preprocessor.json",
                "recipe.json", "task.json", "task.weights.h5"]  # fmt: skip


def raw_images(seed=0, sizes=((40, 50), (32, 32), (77, 45))):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3)).astype("uint8") for h, w in sizes]


def tiny_classifier(**kwargs):
    pre = SpikformerImageClassifierPreprocessor((32, 32), mean=MEAN, std=STD)
    return Spikformer(SpikformerBackbone(**TINY), num_classes=3, preprocessor=pre, **kwargs)


def manual_preprocess(image, size=32):
    """The evaluation transform by hand: centre square, bicubic resize, normalise."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side].astype("float32")
    resized = ops.convert_to_numpy(
        ops.image.resize(square[None], (size, size), interpolation="bicubic",
                         antialias=True)  # fmt: skip
    )
    return (resized / 255.0 - np.array(MEAN)) / np.array(STD)


def test_predict_on_raw_images_of_mixed_sizes_equals_manual_preprocessing():
    model = tiny_classifier()
    images = raw_images()
    logits = model.predict(images, verbose=0)
    manual = np.concatenate([manual_preprocess(im) for im in images]).astype("float32")
    np.testing.assert_allclose(model.preprocessor(np.stack([images[1]])), manual[1:2],
                               atol=1e-4)  # fmt: skip
    with model.preprocessing_disabled():
        expected = model.predict(manual, verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    # A batch array and a list of equal-size images take the same path.
    same = [images[1], images[1]]
    np.testing.assert_array_equal(model.predict(same, verbose=0),
                                  model.predict(np.stack(same), verbose=0))  # fmt: skip


def test_backbone_helpers(tmp_path):
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    run_backbone_test(SpikformerBackbone, TINY, images, (2, 2, 64, 32), tmp_path)


def test_task_helpers(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 36, 36, 3)).astype("uint8")
    run_task_test(Spikformer, {"backbone": SpikformerBackbone(**TINY), "num_classes": 3,
                               "preprocessor": SpikformerImageClassifierPreprocessor(
                                   (32, 32), mean=MEAN, std=STD)},
                  (x, np.array([0, 1, 2, 1])), tmp_path, raw_images=raw_images())  # fmt: skip


def test_zoo_preset_helper():
    images = np.zeros((1, 16, 16, 1), "float32")
    model = run_preset_test(Spikformer, "spikformer_tiny_digits", images, (1, 10),
                            load_weights=True)  # fmt: skip
    assert model.preset_metadata["weights"]["test_accuracy"] > 0.95


def test_every_save_writes_every_file_and_reloads_exactly(tmp_path):
    model = tiny_classifier()
    model.save_to_preset(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == PRESET_FILES
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert {"keras_version", "keras_spikformer_version", "parameter_count",
            "date_saved"} <= set(meta)  # fmt: skip
    assert meta["parameter_count"] == model.count_params()
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["registered_name"] == "keras_spikformer>SpikformerBackbone"
    for cls in (Spikformer, ImageClassifier):  # the base resolves the family
        again = cls.from_preset(str(tmp_path / "p"))
        assert type(again) is Spikformer
        np.testing.assert_array_equal(again.predict(raw_images(), verbose=0),
                                      model.predict(raw_images(), verbose=0))  # fmt: skip
    backbone = SpikformerBackbone.from_preset(str(tmp_path / "p"))
    assert backbone.num_layers == 1


def test_overrides_keep_weights_by_path_and_name_the_rest():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deeper = Spikformer.from_preset("spikformer_tiny_digits", num_layers=2)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "block_1/" in messages[0]
    assert "block_0/" not in messages[0] and "head/" not in messages[0]
    source = Spikformer.from_preset("spikformer_tiny_digits")
    by_path = {w.path: ops.convert_to_numpy(w) for w in source.weights}
    kept = [w for w in deeper.weights if not w.path.startswith("block_1/")]
    assert len(kept) == len(source.weights)
    for w in kept:
        np.testing.assert_array_equal(ops.convert_to_numpy(w), by_path[w.path])
    with pytest.warns(UserWarning, match="head/kernel"):
        Spikformer.from_preset("spikformer_tiny_digits", num_classes=4, qkv_bias=True)


def _reference_state_dict(model):
    """The model's weights under the reference names and PyTorch layouts."""
    out = {}
    for name, variable in reference_variable_map(model).items():
        value = ops.convert_to_numpy(variable)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 2:
            value = value.T
        out[name] = value
    return out


@pytest.mark.large
def test_evaluate_works_for_converted_and_saved_presets(tmp_path):
    shipped = Spikformer.from_preset("spikformer_tiny_digits")
    recorded = evaluate("spikformer_tiny_digits", "digits", verbose=0)["test_accuracy"]
    assert abs(recorded - shipped.preset_metadata["weights"]["test_accuracy"]) < 1e-4
    np.savez(tmp_path / "sd.npz", **_reference_state_dict(shipped))
    assert set(read_state_dict(tmp_path / "sd.npz")) == set(_reference_state_dict(shipped))
    convert_checkpoint(tmp_path / "sd.npz", tmp_path / "converted",
                       preset="spikformer_tiny_digits", progress=False)  # fmt: skip
    shipped.save_to_preset(tmp_path / "saved")
    for directory in ("converted", "saved"):
        metrics = evaluate(str(tmp_path / directory), "digits", verbose=0)
        assert abs(metrics["test_accuracy"] - recorded) < 1e-6, directory


def _copy_zoo(name, tmp_path):
    target = tmp_path / name
    shutil.copytree(preset_io.zoo_dir() / name, target)
    return target


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "config.json").write_text("{not json"), "config.json is corrupt"),
        (lambda d: (d / "task.json").write_text("[]"), "task.json is not a serialised"),
        (lambda d: (d / "preprocessor.json").write_text('{"config": {"crop_pct": 3}, "class_name": "x"}'),
         "preprocessor.json describes 'x'"),
        (lambda d: (d / "preprocessor.json").write_text(
            (d / "preprocessor.json").read_text().replace('"crop_pct": 1.0', '"crop_pct": 3')),
         "preprocessor.json is invalid"),
        (lambda d: (d / "model.weights.h5").write_bytes((d / "model.weights.h5").read_bytes()[:900]),
         "model.weights.h5 cannot be loaded"),
        (lambda d: (d / "task.json").write_text(
            (d / "task.json").read_text().replace('"num_classes": 10', '"num_classes": 7')),
         "task.weights.h5 does not fit"),
    ],
)  # fmt: skip
def test_damaged_preset_files_are_named(tmp_path, damage, message):
    directory = _copy_zoo("spikformer_tiny_digits", tmp_path)
    damage(directory)
    with pytest.raises(ValueError, match=message):
        Spikformer.from_preset(str(directory))


def test_config_of_another_class_is_refused(tmp_path):
    directory = _copy_zoo("spikformer_tiny_cifar", tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["registered_name"] = "keras_spikformer>SpikformerBlock"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a keras-spikformer Backbone"):
        Spikformer.from_preset(str(directory))


def test_bad_images_and_mismatched_preprocessor():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="3-channel images; got 1"):
        model.predict(np.zeros((2, 40, 40, 1), "uint8"), verbose=0)
    with pytest.raises(ValueError, match="channels-first"):
        model.predict(np.zeros((2, 3, 40, 40), "uint8"), verbose=0)
    with pytest.raises(ValueError, match="image_size=\\(32, 32\\)"):
        Spikformer(SpikformerBackbone(**TINY), num_classes=3,
                   preprocessor=SpikformerImageClassifierPreprocessor((64, 64)))  # fmt: skip
    with pytest.raises(ValueError, match="crop_pct"):
        SpikformerImageClassifierPreprocessor((32, 32), crop_pct=0)


@pytest.mark.parametrize(
    "handle, message",
    [("kaggle://keras/spikformer", "not supported"), ("gs://bucket/p", "not supported")],
)
@pytest.mark.backend_independent
def test_unsupported_schemes(handle, message):
    with pytest.raises(ValueError, match=message):
        preset_io.resolve(handle)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"num_heads": 0}, ValueError, "num_heads"),
        ({"num_timesteps": 2.5}, TypeError, "num_timesteps` must be an integer"),
        ({"num_timesteps": "4"}, TypeError, "num_timesteps` must be an integer"),
        ({"num_classes": 0}, ValueError, "num_classes"),
    ],
)
def test_constructor_arguments_are_type_and_range_checked(overrides, error, message):
    with pytest.raises(error, match=message):
        Spikformer.from_preset("spikformer_tiny_cifar", load_weights=False, **overrides)


def test_image_shape_override_adapts_the_preprocessor():
    model = Spikformer.from_preset("spikformer_tiny_cifar", load_weights=False,
                                   image_shape=(64, 64, 3))  # fmt: skip
    assert tuple(model.preprocessor.image_size) == (64, 64)
    assert model.predict(raw_images(), verbose=0).shape == (3, 10)
    assert keras.ops.convert_to_numpy(model.preprocessor(raw_images()[0][None])).shape == (
        1, 64, 64, 3)  # fmt: skip


def test_preprocessor_runs_inside_tf_data_on_every_backend():
    import tensorflow as tf

    model = tiny_classifier()
    x = np.random.default_rng(0).integers(0, 256, (4, 40, 50, 3)).astype("uint8")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 2, 1]))).batch(2)
    np.testing.assert_array_equal(model.predict(dataset, verbose=0),
                                  model.predict(x, verbose=0))  # fmt: skip
    model.compile()
    assert np.isfinite(model.fit(dataset, epochs=1, verbose=0).history["loss"][0])
