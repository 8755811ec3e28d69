"""Spike-driven Transformer V1: the reference's weights give its logits, spike for spike.

`data/sdt_v1_small.*` are copies of ../shared/fixtures/successors/ (the
reference model files of BICLab/Spike-Driven-Transformer run unchanged: width
48, 2 blocks, 8 heads, pooling "0011", 32x32, T=2, 10 classes). Weights lie on
a coarse grid so that every sum over spikes is exact in float32.
"""

import numpy as np
import pytest
from conftest import DATA, images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import load_reference_weights, read_state_dict
from keras_spikformer.convert import spike_driven_transformer_weights as sdt_weights
from keras_spikformer.models.spike_driven_transformer import (
    SpikeDrivenTransformer,
    SpikeDrivenTransformerBackbone,
)
from keras_spikformer.testing import loss_and_gradients

FIXTURE = "sdt_v1_small"


def build_model(state_dict, **given):
    config, num_classes, _ = sdt_weights.infer_architecture(state_dict, **given)
    backbone = SpikeDrivenTransformerBackbone(**config)
    return SpikeDrivenTransformer(backbone, num_classes=num_classes)


def fixture_model():
    npz, config = load_fixture(FIXTURE)
    state_dict = state_dict_of(npz)
    model = build_model(state_dict, num_timesteps=config["T"])
    report = load_reference_weights(model, state_dict)
    assert report.ok and not report.missing
    return model, npz


def to_reference_layout(spikes, reference):
    """Our `[B, T, ...]` channels-last spikes in the reference's `[T, B, C, ...]` layout."""
    x = np.swapaxes(np.asarray(spikes), 0, 1)
    if x.ndim == 5:
        x = x.transpose(0, 1, 4, 2, 3)
    return x.reshape(reference.shape)  # the mask neuron: [T, B, C] -> [T, B, h, 1, d]


def test_architecture_is_inferred_from_the_fixture():
    npz, config = load_fixture(FIXTURE)
    state_dict = state_dict_of(npz)
    model_config, num_classes, _ = sdt_weights.infer_architecture(state_dict)
    builder = config["builder_cfg"]
    assert model_config["hidden_dim"] == builder["embed_dims"]
    assert model_config["num_layers"] == builder["depths"]
    assert model_config["num_heads"] == builder["num_heads"]
    assert model_config["pooling"] == builder["pooling_stat"]
    assert num_classes == builder["num_classes"]
    model = build_model(state_dict, num_timesteps=config["T"])
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == config["params_total"] == 93_000


def test_eval_logits_and_every_spike_match():
    model, npz = fixture_model()
    modules = sdt_weights.reference_module_map(model)
    with record_spikes() as record:
        logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
    spike_keys = [k for k in npz.files if k.startswith("lif/")]
    assert len(spike_keys) == 19
    for key in spike_keys:
        reference = npz[key]
        ours = ops.convert_to_numpy(record.last(modules[key[len("lif/") :]]))
        flips = int(np.sum(to_reference_layout(ours, reference) != reference))
        assert flips == 0, f"{key}: {flips} spikes differ from the reference"


def test_predict_is_exact_under_compilation():
    model, npz = fixture_model()
    logits = model.predict(images_of(npz), verbose=0)
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_train_step_loss_and_gradients_match():
    model, npz = fixture_model()
    labels = npz["train/labels"]
    loss, _, grads, grad_input = loss_and_gradients(model, images_of(npz), labels)
    np.testing.assert_allclose(loss, float(npz["train/loss"]), rtol=1e-4)

    by_variable = {
        id(v): g for v, g in zip(model.trainable_variables, grads, strict=True)
    }
    variables = sdt_weights.reference_variable_map(model)
    _, config = load_fixture(FIXTURE)
    # Conv biases that feed a BN have an exactly zero gradient in theory; both
    # sides hold float noise (~1e-6), so they are compared on the scale of the
    # largest gradient, as the fixture's notes prescribe.
    check = config["fp64_check_train"]
    zero_grad = set(check["zero_grad_params_fp32_absmax"])
    zero_tolerance = 1e-4 * check["largest_fp64_grad"]
    compared = 0
    for key in (k for k in npz.files if k.startswith("grad/") and k != "grad/input"):
        name = key[len("grad/") :]
        variable = variables[name]
        reference = sdt_weights.to_keras_layout(name, npz[key], tuple(variable.shape))
        ours = by_variable[id(variable)]
        tolerance = 1e-4 * np.abs(reference).max() + 1e-7
        if name in zero_grad:
            tolerance = zero_tolerance
        assert np.abs(ours - reference).max() <= tolerance, name
        compared += 1
    # The never-applied talking-heads weights get no gradient (None or zeros).
    for name in config["train_check"]["params_without_grad"]:
        grad = by_variable[id(variables[name])]
        assert grad is None or grad.dtype == object or not np.any(grad), name
        compared += 1
    assert compared == len(model.trainable_variables)
    reference = npz["grad/input"]
    ours = grad_input.transpose(0, 3, 1, 2)  # NHWC -> NCHW, summed over T copies
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max() + 1e-7


@pytest.mark.large
def test_checkpoint_file_converts_without_torch_and_reproduces_logits():
    npz, config = load_fixture(FIXTURE)
    state_dict = read_state_dict(DATA / f"{FIXTURE}.pth.tar")
    assert sdt_weights.recognises(state_dict)
    model = build_model(state_dict, num_timesteps=config["T"])
    report = load_reference_weights(model, state_dict)
    assert len(report.loaded) == len(model.weights)
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
