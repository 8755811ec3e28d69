"""Meta-SpikeFormer: the reference's weights give the reference's logits, spike for spike.

Fixture: BICLab/Spike-Driven-Transformer-V2 `classification/models.py` run on
CPU (widths 8-8-16-16, 4 heads, 6+2 transformer blocks, 64x64, T=2, 10
classes). `data/sdt_v2_small.*` are copies of ../shared/fixtures/successors/
(see the README there).
"""

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import load_reference_weights, read_state_dict
from keras_spikformer.convert import meta_spikeformer_weights as weights
from keras_spikformer.models.meta_spikeformer import (
    MetaSpikeFormer,
    MetaSpikeFormerBackbone,
)
from keras_spikformer.testing import loss_and_gradients

DATA = Path(__file__).parent / "data"
NPZ = DATA / "sdt_v2_small.npz"
CHECKPOINT = DATA / "sdt_v2_small.pth.tar"
ARCHITECTURE = {"num_heads": 4, "num_timesteps": 2, "image_shape": (64, 64, 3)}


@pytest.fixture(scope="module")
def npz():
    return np.load(NPZ)


def state_dict_of(npz):
    return {k[len("sd/") :]: npz[k] for k in npz.files if k.startswith("sd/")}


@pytest.fixture(scope="module")
def built_model(npz):
    """One build per module (~7 s); each test reloads the reference weights."""
    config, num_classes, _ = weights.infer_architecture(
        state_dict_of(npz), **ARCHITECTURE
    )
    kd = config.pop("distillation_head")
    return MetaSpikeFormer(MetaSpikeFormerBackbone(**config), num_classes, kd)


@pytest.fixture
def model(built_model, npz):
    """The fixture model with fresh reference weights and moving statistics."""
    load_reference_weights(built_model, state_dict_of(npz))
    return built_model


def images_of(npz):
    return npz["input"].transpose(0, 2, 3, 1)  # NCHW -> NHWC


def to_reference_layout(spikes, reference):
    """Our `[B, T, ...]` channels-last spikes in the reference's `[T, B, C, ...]`."""
    x = np.swapaxes(np.asarray(spikes), 0, 1)
    if x.ndim == 5:  # [T, B, H, W, C] -> [T, B, C, H, W] (or [T, B, C, N])
        x = x.transpose(0, 1, 4, 2, 3)
    elif x.ndim == 4:  # attention tokens [T, B, N, C] -> [T, B, C, N]
        x = x.transpose(0, 1, 3, 2)
    return x.reshape(reference.shape)


def test_architecture_inferred_from_the_state_dict(npz):
    config, num_classes, notes = weights.infer_architecture(state_dict_of(npz))
    assert config["widths"] == [8, 8, 16, 16]
    assert config["num_layers"] == [6, 2]
    assert config["mlp_ratio"] == 4.0
    assert num_classes == 10 and config["distillation_head"] is False
    assert notes["num_heads"] == "default" and config["num_heads"] == 8
    assert weights.recognises(state_dict_of(npz))


def forward_with_spikes(model, images, layers):
    """Eval logits and the spikes of `layers`; one compiled call on JAX.

    (Eager JAX dispatches op by op: minutes for this 77-neuron model.)
    """
    if keras.backend.backend() != "jax":
        with record_spikes() as record:
            logits = model(images, training=False)
        return logits, [record.last(layer) for layer in layers]
    import jax

    def run(trainable, non_trainable, x):
        with record_spikes() as record:
            logits, _ = model.stateless_call(trainable, non_trainable, x)
        return logits, [record.last(layer) for layer in layers]

    return jax.jit(run)(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        images,
    )


def test_eval_logits_and_every_spike_match(model, npz):
    modules = weights.reference_module_map(model)
    spike_keys = [k for k in npz.files if k.startswith("lif/")]
    assert len(spike_keys) == 77
    logits, spikes = forward_with_spikes(
        model, images_of(npz), [modules[k[4:]] for k in spike_keys]
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(logits), npz["logits"], rtol=0, atol=1e-5
    )
    for key, recorded in zip(spike_keys, spikes, strict=True):
        reference = npz[key]
        ours = to_reference_layout(ops.convert_to_numpy(recorded), reference)
        flips = int(np.sum(ours != reference))
        assert flips == 0, f"{key}: {flips} spikes differ from the reference"
    maps = ops.convert_to_numpy(model.backbone(images_of(npz), training=False))
    reference = npz["inter/block4.1"]  # [T, B, C, H, W]
    np.testing.assert_allclose(
        maps.transpose(1, 0, 4, 2, 3), reference, rtol=0, atol=1e-5
    )


@pytest.mark.large
def test_predict_is_exact_under_compilation(model, npz):
    logits = model.predict(images_of(npz), verbose=0)
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_released_checkpoint_format_converts_without_torch(built_model, npz):
    state_dict = read_state_dict(str(CHECKPOINT))
    config, num_classes, _ = weights.infer_architecture(state_dict, **ARCHITECTURE)
    model = built_model
    assert list(model.backbone.widths) == config["widths"]
    report = load_reference_weights(model, state_dict)
    assert report.ok and not report.missing
    assert all(name.endswith("num_batches_tracked") for name in report.ignored)
    assert len(report.loaded) == len(model.weights)
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_train_step_loss_and_gradients_match(model, npz):
    """Batch statistics; the RepConv borders use the post-update running stats."""
    loss, logits, grads, grad_input = loss_and_gradients(
        model, images_of(npz), npz["train/labels"]
    )
    np.testing.assert_allclose(loss, float(npz["train/loss"]), rtol=1e-4)
    np.testing.assert_allclose(logits, npz["train/logits"], rtol=0, atol=1e-4)

    by_variable = {
        id(v): g for v, g in zip(model.trainable_variables, grads, strict=True)
    }
    variables = weights.reference_variable_map(model)
    compared = 0
    for key in (k for k in npz.files if k.startswith("grad/") and k != "grad/input"):
        name = key[len("grad/") :]
        variable = variables[name]
        reference = weights.to_keras_layout(name, npz[key], tuple(variable.shape))
        ours = by_variable[id(variable)]
        # 1e-4 relative to the tensor's scale; BN-fed biases have an exactly
        # zero gradient in theory and ~1e-9 float noise in the fixture.
        tolerance = 1e-4 * np.abs(reference).max() + 1e-7
        assert np.abs(ours - reference).max() <= tolerance, name
        compared += 1
    assert compared == len(model.trainable_variables)

    grad_input = grad_input.transpose(0, 3, 1, 2)  # NHWC -> NCHW, summed over T copies
    reference = npz["grad/input"]
    assert np.abs(grad_input - reference).max() <= 1e-4 * np.abs(reference).max() + 1e-7


@pytest.mark.large
def test_convert_checkpoint_writes_a_preset_with_the_reference_logits(npz, tmp_path):
    """The generic converter recognises the family; `num_timesteps` etc. are given."""
    from keras_spikformer.convert import convert_checkpoint

    output = tmp_path / "converted"
    convert_checkpoint(
        str(CHECKPOINT), output, num_heads=4, num_timesteps=2, image_size=(64, 64),
        progress=False,
    )  # fmt: skip
    model = MetaSpikeFormer.from_preset(str(output))
    assert model.backbone.num_timesteps == 2 and not model.distillation_head
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
