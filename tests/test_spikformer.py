import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from conftest import images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import Spikformer, SpikformerBackbone
from keras_spikformer.convert import load_reference_weights
from keras_spikformer.preset_builder import count_trainable_params
from keras_spikformer.testing import run_model_saving_test

# SPEC.md, "Variants": trainable parameters of the reference code.
PAPER_PARAMS = {
    "spikformer_8_384_imagenet": 16_816_024,
    "spikformer_6_512_imagenet": 23_373_352,
    "spikformer_8_512_imagenet": 29_689_384,
    "spikformer_10_512_imagenet": 36_005_416,
    "spikformer_8_768_imagenet": 66_338_632,
    "spikformer_4_384_cifar10": 9_324_730,
    "spikformer_4_384_cifar100": 9_359_380,
    "spikformer_4_256_cifar10": 4_155_178,
    "spikformer_2_384_cifar10": 5_765_050,
    "spikformer_2_256_cifar10dvs": 2_566_666,
    "spikformer_2_256_dvsgesture": 2_566_923,
}


def tiny(name="spikformer_tiny_cifar", **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Spikformer.from_preset(name, **overrides)


def fixture_cifar_model():
    npz, _ = load_fixture("cifar10_small")
    model = tiny(preprocessor=None)
    load_reference_weights(model, state_dict_of(npz))
    return model, images_of(npz)


def test_zoo_lists_every_paper_preset_with_metadata():
    presets = Spikformer.presets
    assert set(PAPER_PARAMS) <= set(presets)
    for name in PAPER_PARAMS:
        assert presets[name]["paper"]["top1_accuracy"] > 0
        assert presets[name]["trainable_params"] == PAPER_PARAMS[name]


@pytest.mark.large
@pytest.mark.backend_independent  # the variables a layer creates do not depend on the backend
@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_preset_parameter_counts(name):
    model = Spikformer.from_preset(name, load_weights=False)
    assert count_trainable_params(model) == PAPER_PARAMS[name]


def test_keras_file_round_trip(tmp_path):
    model, images = fixture_cifar_model()
    restored = run_model_saving_test(model, images, tmp_path)
    assert isinstance(restored.backbone, SpikformerBackbone)


def test_keras_file_round_trip_across_backends(tmp_path):
    """A `.keras` file written by the other backend loads here with the same outputs."""
    here = keras.backend.backend()
    other = "jax" if here == "tensorflow" else "tensorflow"
    script = (
        "import numpy as np, keras, keras_spikformer as ks, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "keras.utils.set_random_seed(7)\n"
        "m = ks.Spikformer.from_preset('spikformer_tiny_cifar')\n"
        "x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype('float32')\n"
        f"m.save(r'{tmp_path / 'model.keras'}')\n"
        f"np.savez(r'{tmp_path / 'ref.npz'}', x=x, y=np.asarray(m(x, training=False)))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": other}
    subprocess.run(
        [sys.executable, "-c", script], check=True, env=env, capture_output=True
    )
    restored = keras.saving.load_model(tmp_path / "model.keras")
    ref = np.load(tmp_path / "ref.npz")
    assert type(restored) is Spikformer
    out = ops.convert_to_numpy(restored(ref["x"], training=False))
    np.testing.assert_allclose(out, ref["y"], rtol=0, atol=1e-5)


def test_save_to_preset_round_trip(tmp_path):
    model, images = fixture_cifar_model()
    model.save_to_preset(tmp_path / "preset")
    assert sorted(os.listdir(tmp_path / "preset")) == [
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "recipe.json",
        "task.json",
        "task.weights.h5",
    ]
    meta = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert meta["trainable_params"] == count_trainable_params(model)
    restored = Spikformer.from_preset(str(tmp_path / "preset"), load_weights=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(restored(images, training=False)),
        ops.convert_to_numpy(model(images, training=False)),
    )
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_to_preset(tmp_path / "preset")
    model.save_to_preset(tmp_path / "preset", overwrite=True)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp left


def test_from_preset_overrides_keep_what_fits(tmp_path):
    model, images = fixture_cifar_model()
    model.save_to_preset(tmp_path / "p")
    # A new head: everything else is loaded, the head is fresh (and named).
    with pytest.warns(UserWarning, match="head"):
        new_head = Spikformer.from_preset(str(tmp_path / "p"), num_classes=3)
    assert new_head.output.shape == (None, 3)
    for a, b in zip(model.backbone.weights, new_head.backbone.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    # More time steps keep every weight.
    longer = Spikformer.from_preset(str(tmp_path / "p"), num_timesteps=4)
    assert longer.backbone.num_timesteps == 4
    for a, b in zip(model.weights, longer.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_mixed_bfloat16_builds_and_runs():
    model = tiny(dtype="mixed_bfloat16", preprocessor=None)
    assert all(w.dtype == "float32" for w in model.weights)
    logits = model.predict(
        np.random.default_rng(0).normal(size=(2, 32, 32, 3)), verbose=0
    )
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    reloaded = Spikformer.from_config(model.get_config())
    assert reloaded.backbone.get_layer("patch_embed").compute_dtype == "bfloat16"


def test_fit_with_xla_reduces_the_loss():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.repeat(np.repeat(digits.images[:256, :, :, None] / 16.0, 2, 1), 2, 2)
    y = digits.target[:256]
    model = tiny("spikformer_tiny_digits", load_weights=False, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.AdamW(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=keras.backend.backend() != "torch",  # torch.compile: minutes
    )
    history = model.fit(x.astype("float32"), y, epochs=6, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


def test_evaluation_does_not_depend_on_batch_size():
    model, _ = fixture_cifar_model()
    images = np.random.default_rng(3).normal(size=(8, 32, 32, 3)).astype("float32")
    one_by_one = model.predict(images, batch_size=1, verbose=0)
    all_at_once = model.predict(images, batch_size=8, verbose=0)
    np.testing.assert_allclose(one_by_one, all_at_once, rtol=0, atol=1e-6)


def test_event_frame_presets_take_time_major_frames():
    model = tiny("spikformer_tiny_dvs")
    frames = np.random.default_rng(0).poisson(0.5, (2, 4, 64, 64, 2)).astype("float32")
    assert model.predict(frames, verbose=0).shape == (2, 10)
    with pytest.raises(ValueError, match="expect"):
        model(frames[:, :3])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_dim": 60, "num_heads": 4}, "divisible by 8"),
        ({"hidden_dim": 64, "num_heads": 5}, "divisible by `num_heads`"),
        ({"image_shape": (30, 30, 3)}, "not divisible by patch_size"),
        ({"num_timesteps": 0}, "num_timesteps"),
        ({"patch_size": 3}, "power of two"),
        ({"encoding": "rate"}, "encoding"),
    ],
)
def test_impossible_configs_fail_before_building(overrides, message):
    with pytest.raises(ValueError, match=message):
        Spikformer.from_preset("spikformer_tiny_cifar", load_weights=False, **overrides)


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ValueError, match="spikformer_8_768_imagenet") as info:
        Spikformer.from_preset("spikformer_8_786_imagenet")
    assert "Did you mean" in str(info.value)


def test_directory_that_is_not_a_preset(tmp_path):
    with pytest.raises(ValueError, match="not a preset directory"):
        Spikformer.from_preset(str(tmp_path))


def test_weights_required_but_absent():
    with pytest.raises(ValueError, match="ships no weights"):
        Spikformer.from_preset("spikformer_8_768_imagenet", load_weights=True)


def test_unknown_override_is_named():
    with pytest.raises(TypeError, match="embed_dims"):
        Spikformer.from_preset("spikformer_tiny_cifar", embed_dims=64)


def test_missing_weights_warn():
    with pytest.warns(UserWarning, match="freshly initialised"):
        Spikformer.from_preset("spikformer_tiny_cifar")


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 32, 32, 1), "expects inputs of shape"),
        ((2, 3, 32, 32), "channels-first"),
        ((2, 32, 32), "expects inputs of shape"),
        ((2, 16, 16, 3), "Resize the images"),
    ],
)
def test_wrong_input_shapes_are_explained(shape, message):
    model = tiny()
    with pytest.raises(ValueError, match=message):
        model(np.zeros(shape, "float32"))


def test_mismatched_checkpoint_lists_every_problem():
    npz, _ = load_fixture("cifar10_small")
    sd = state_dict_of(npz)
    sd.pop("head.bias")
    sd["block.0.attn.q_linear.weight"] = sd["block.0.attn.q_linear.weight"][:, :32]
    sd["extra.weight"] = np.zeros(3)
    model = tiny()
    before = [ops.convert_to_numpy(w) for w in model.weights]
    with pytest.raises(ValueError) as info:
        load_reference_weights(model, sd)
    text = str(info.value)
    assert "head.bias" in text and "extra.weight" in text and "q_linear.weight" in text
    for a, b in zip(before, model.weights, strict=True):  # nothing was assigned
        np.testing.assert_array_equal(a, ops.convert_to_numpy(b))
