"""Spike-driven Transformer V1: layers, presets, saving, training, conversion and bad input."""

import warnings

import keras
import numpy as np
import pytest
from conftest import DATA, images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import Spikformer
from keras_spikformer.convert import convert_checkpoint, load_reference_weights
from keras_spikformer.models.spike_driven_transformer import (
    Erode,
    MembraneRPE,
    SpikeDrivenBlock,
    SpikeDrivenPatchSplitting,
    SpikeDrivenTransformer,
    SpikeDrivenTransformerBackbone,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_attention import (
    max_pool_3x3_s1,
)
from keras_spikformer.preset_builder import count_trainable_params
from keras_spikformer.testing import (
    run_layer_test,
    run_model_saving_test,
    run_serialization_test,
    vector_jacobian,
)

TINY = "sdt_tiny_cifar"
# Trainable parameters of the reference code (spec table, talking heads included).
REFERENCE_PARAMS = {
    "sdt_8_384_imagenet": 16_816_536,
    "sdt_6_512_imagenet": 23_373_736,
    "sdt_8_512_imagenet": 29_689_896,
    "sdt_10_512_imagenet": 36_006_056,
    "sdt_8_768_imagenet": 66_339_144,
    "sdt_2_512_cifar10": 10_233_546,
    "sdt_2_512_cifar100": 10_279_716,
    "sdt_2_256_dvsgesture": 2_567_051,
    "sdt_2_256_cifar10dvs": 2_566_794,
    TINY: 93_000,
}
SMALL_PRESETS = ("sdt_2_256_dvsgesture", "sdt_2_256_cifar10dvs", TINY)


def tiny(**overrides):
    return SpikeDrivenTransformer.from_preset(TINY, load_weights=False, **overrides)


def test_block_with_erode():
    run_layer_test(
        SpikeDrivenBlock,
        {"hidden_dim": 16, "num_heads": 2, "erode": True},
        input_shape=(2, 2, 4, 4, 16),
        expected_output_shape=(2, 2, 4, 4, 16),
        allow_unchanged=(
            "talking_heads",
        ),  # built, never applied (as in the reference)
    )


def test_stem_and_rpe():
    run_layer_test(
        SpikeDrivenPatchSplitting,
        {"hidden_dim": 16, "pooling": "0101"},
        input_shape=(2, 2, 16, 16, 3),
        expected_output_shape=(2, 2, 4, 4, 16),
        run_mixed_precision=False,
    )
    run_serialization_test(MembraneRPE(16, name="rpe"))
    run_serialization_test(Erode(name="erode"))


def test_erode_is_pytorch_max_pool_with_first_maximum_gradient():
    x = np.zeros((1, 3, 3, 1), "float32")
    x[0, 0, 0, 0] = x[0, 2, 2, 0] = 1.0  # two tied maxima in the centre window
    out = ops.convert_to_numpy(max_pool_3x3_s1(x))
    expected = np.ones_like(x)
    expected[0, 2, 0, 0] = expected[0, 0, 2, 0] = 0.0  # windows that see neither
    np.testing.assert_array_equal(out, expected)
    upstream = np.zeros_like(x)
    upstream[0, 1, 1, 0] = 1.0  # the centre output: its first maximum is (0, 0)
    grad, _ = vector_jacobian(max_pool_3x3_s1, x, upstream=upstream)
    want = np.zeros_like(x)
    want[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(grad, want)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=() if n in SMALL_PRESETS else pytest.mark.large)
        for n in REFERENCE_PARAMS
    ],
)
@pytest.mark.backend_independent  # the variables a layer creates do not depend on the backend
def test_preset_parameter_counts_equal_the_reference_code(name):
    model = SpikeDrivenTransformer.from_preset(name, load_weights=False)
    trainable = count_trainable_params(model)
    assert trainable == REFERENCE_PARAMS[name]
    assert model.preset_metadata["trainable_params"] == trainable


def test_presets_are_listed():
    names = set(SpikeDrivenTransformer.presets)
    assert names == set(REFERENCE_PARAMS)
    assert not names & set(Spikformer.presets)


def test_keras_and_preset_round_trips_are_exact(tmp_path):
    model = tiny()
    images = keras.random.normal((2, 32, 32, 3), seed=1)
    run_model_saving_test(model, images, tmp_path)
    model.save_to_preset(tmp_path / "preset")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a weight left behind would warn
        restored = SpikeDrivenTransformer.from_preset(tmp_path / "preset")
    assert type(restored.backbone) is SpikeDrivenTransformerBackbone
    assert restored.backbone.get_config() == {
        **model.backbone.get_config(),
        "name": restored.backbone.name,
    }
    np.testing.assert_array_equal(
        ops.convert_to_numpy(restored(images)), ops.convert_to_numpy(model(images))
    )


def test_mixed_precision_and_per_step_logits():
    model = tiny(dtype="mixed_bfloat16")
    logits = model(np.zeros((2, 32, 32, 3), "float32"))
    assert tuple(logits.shape) == (2, 10) and ops.dtype(logits) == "float32"
    backbone = SpikeDrivenTransformerBackbone.from_preset(TINY, load_weights=False)
    per_step = SpikeDrivenTransformer(backbone, num_classes=10, per_step_logits=True)
    assert tuple(per_step(np.zeros((2, 32, 32, 3))).shape) == (2, 2, 10)


@pytest.mark.large  # the XLA compile of a 2-block model: ~40 s of CPU
def test_fit_with_xla_trains_the_tiny_preset():
    model = tiny(preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        jit_compile=keras.backend.backend() != "torch",  # torch.compile: minutes
    )
    before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    history = model.fit(x, np.arange(4) % 10, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert (
        sum(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)) > 50
    )


@pytest.mark.parametrize(
    "pooling, message", [("011", "4 flags"), ("0021", "4 flags"), (1111, "4 flags")]
)
def test_bad_pooling_string(pooling, message):
    with pytest.raises(ValueError, match=message):
        SpikeDrivenTransformerBackbone(
            image_shape=(32, 32, 3), hidden_dim=16, pooling=pooling
        )


def test_image_size_the_pooling_cannot_divide():
    with pytest.raises(ValueError, match="not divisible by 16"):
        SpikeDrivenTransformerBackbone(image_shape=(40, 40, 3), hidden_dim=16)


def test_checkpoints_of_the_other_family_are_refused():
    sdt = tiny()
    spikformer_npz, _ = load_fixture("imagenet_small")
    with pytest.raises(ValueError, match="spikformer checkpoint"):
        load_reference_weights(sdt, state_dict_of(spikformer_npz))
    sdt_npz, _ = load_fixture("sdt_v1_small")
    spikformer = Spikformer.from_preset("spikformer_tiny_imagenet", load_weights=False)
    with pytest.raises(ValueError, match="spike_driven_transformer checkpoint"):
        load_reference_weights(spikformer, state_dict_of(sdt_npz))


def test_checkpoint_without_talking_heads_weights():
    npz, _ = load_fixture("sdt_v1_small")
    state_dict = state_dict_of(npz)
    del state_dict["block.1.attn.talking_heads.weight"]
    with pytest.raises(ValueError, match="talking-heads"):
        load_reference_weights(tiny(), state_dict)


@pytest.mark.large
@pytest.mark.parametrize("preset", [None, TINY])
def test_convert_checkpoint_reproduces_the_logits(tmp_path, preset):
    npz, config = load_fixture("sdt_v1_small")
    options = {"num_timesteps": config["T"]} if preset is None else {}
    convert_checkpoint(
        DATA / "sdt_v1_small.pth.tar", tmp_path / "out", preset=preset, **options
    )
    model = SpikeDrivenTransformer.from_preset(tmp_path / "out")
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
