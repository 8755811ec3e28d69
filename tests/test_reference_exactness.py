"""The spine: the reference's weights give the reference's logits, spike for spike.

Fixtures come from running ZK-Zhou/spikformer (SpikingJelly 0.0.0.0.12, timm
0.5.4) with fixed seeds; weights lie on a coarse grid so that every matmul is
exact in float32 (see ../shared/SPEC.md, "Fixtures").
"""

import numpy as np
import pytest
from conftest import FIXTURE_PRESETS, images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import Spikformer, record_spikes
from keras_spikformer.convert import (
    canonical_name,
    load_reference_weights,
    reference_module_map,
    reference_variable_map,
    to_keras_layout,
)
from keras_spikformer.testing import loss_and_gradients

FIXTURES = sorted(FIXTURE_PRESETS)


def fixture_model(name, **options):
    npz, _ = load_fixture(name)
    model = Spikformer.from_preset(
        FIXTURE_PRESETS[name], load_weights=False, preprocessor=None, **options
    )
    report = load_reference_weights(model, state_dict_of(npz))
    assert report.ok and not report.missing
    return model, npz


def to_reference_layout(spikes, reference):
    """Our `[B, T, ...]` channels-last spikes in the reference's layout."""
    x = np.swapaxes(np.asarray(spikes), 0, 1)  # [T, B, ...]
    if x.ndim == 5:  # conv maps [T, B, H, W, C] -> [T, B, C, H, W]
        return x.transpose(0, 1, 4, 2, 3)
    if reference.shape[2] != x.shape[2] or reference.ndim == 5:
        # ImageNet reference keeps tokens as [T, B, C, N] (or [T, B, C, H, W]).
        return x.transpose(0, 1, 3, 2).reshape(reference.shape)
    return x


@pytest.mark.parametrize("name", FIXTURES)
def test_config_matches_fixture(name):
    _, config = load_fixture(name)
    model = Spikformer.from_preset(FIXTURE_PRESETS[name], load_weights=False)
    cfg = config["builder_cfg"]
    assert model.backbone.hidden_dim == cfg["embed_dims"]
    assert model.backbone.num_layers == cfg["depths"]
    assert model.backbone.num_heads == cfg["num_heads"]
    assert model.backbone.num_timesteps == config["T"]
    assert model.backbone.image_shape[0] == cfg["img_size"]


@pytest.mark.parametrize("name", FIXTURES)
def test_eval_logits_and_every_spike_match(name):
    model, npz = fixture_model(name)
    modules = reference_module_map(model)
    with record_spikes() as record:
        logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
    spike_keys = [k for k in npz.files if k.startswith("lif/")]
    assert len(spike_keys) == 12
    for key in spike_keys:
        reference = npz[key]
        ours = to_reference_layout(
            ops.convert_to_numpy(record.last(modules[key[4:]])), reference
        )
        flips = int(np.sum(ours != reference))
        assert flips == 0, f"{key}: {flips} spikes differ from the reference"


@pytest.mark.parametrize("name", FIXTURES)
def test_predict_is_exact_under_compilation(name):
    model, npz = fixture_model(name)
    logits = model.predict(images_of(npz), verbose=0)
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("remat", [False, True], ids=["stored", "remat"])
@pytest.mark.parametrize("name", FIXTURES)
def test_train_step_loss_and_gradients_match(name, remat):
    model, npz = fixture_model(name, remat=remat)
    loss, _, grads, grad_input = loss_and_gradients(
        model, images_of(npz), npz["train/labels"]
    )
    np.testing.assert_allclose(loss, float(npz["train/loss"]), rtol=1e-4)

    by_variable = {
        id(v): g for v, g in zip(model.trainable_variables, grads, strict=False)
    }
    variables = reference_variable_map(model)
    compared = 0
    for key in (k for k in npz.files if k.startswith("grad/") and k != "grad/input"):
        name_ = canonical_name(key[len("grad/") :])
        variable = variables[name_]
        reference = to_keras_layout(name_, npz[key], tuple(variable.shape))
        ours = by_variable[id(variable)]
        # 1e-4 relative to the tensor's scale; BN-fed biases have an exactly
        # zero gradient in theory and ~1e-9 float noise in the fixture.
        tolerance = 1e-4 * np.abs(reference).max() + 1e-7
        assert np.abs(ours - reference).max() <= tolerance, name_
        compared += 1
    assert compared == len(model.trainable_variables)

    grad_input = grad_input.transpose(0, 3, 1, 2)  # NHWC -> NCHW, summed over T copies
    reference = npz["grad/input"]
    assert np.abs(grad_input - reference).max() <= 1e-4 * np.abs(reference).max() + 1e-7
