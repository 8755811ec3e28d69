"""QKFormer: the reference's weights give its logits, spike for spike, and its gradients.

`data/qkformer_small.*` are copies of ../shared/fixtures/successors/ (the
reference `cifar10/model.py` of zhouchenlin2096/QKFormer run unchanged: CIFAR
flavour, width 64 (stages 16/32/64), 1+1+1 blocks, 8 heads, 32x32, T=2, 10
classes). Weights lie on a coarse grid so that every sum over spikes is exact
in float32.
"""

import numpy as np
from conftest import images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import qkformer_weights
from keras_spikformer.models.qkformer import QKFormer, QKFormerBackbone
from keras_spikformer.testing import loss_and_gradients

FIXTURE = "qkformer_small"


def build_model(state_dict, **given):
    config, num_classes, _ = qkformer_weights.infer_architecture(state_dict, **given)
    return QKFormer(QKFormerBackbone(**config), num_classes=num_classes)


def load(model, state_dict):
    """Assigns a reference state dict (every tensor checked first)."""
    targets = qkformer_weights.reference_variable_map(model)
    pending = []
    for name, value in state_dict.items():
        if qkformer_weights.is_ignored(name):
            continue
        variable = targets.pop(name)
        array = qkformer_weights.to_keras_layout(name, value, tuple(variable.shape))
        assert array.shape == tuple(variable.shape), name
        pending.append((variable, array))
    assert not targets, f"not in the state dict: {sorted(targets)}"
    for variable, array in pending:
        variable.assign(array)


def fixture_model():
    npz, config = load_fixture(FIXTURE)
    state_dict = state_dict_of(npz)
    model = build_model(state_dict, num_timesteps=config["T"])
    load(model, state_dict)
    return model, npz


def to_reference_layout(spikes, reference):
    """Our `[B, T, ...]` channels-last spikes in the reference's layout."""
    x = np.swapaxes(np.asarray(spikes), 0, 1)  # [T, B, ...]
    if reference.ndim == 5 and reference.shape[3] == 1:
        # token-attention mask [T, B, H, W, heads] -> [T, B, heads, 1, H*W]
        t, b, _, _, heads = x.shape
        return x.reshape(t, b, -1, heads).transpose(0, 1, 3, 2)[:, :, :, None, :]
    if x.ndim == 5:  # conv maps [T, B, H, W, C] -> [T, B, C, H, W]
        x = x.transpose(0, 1, 4, 2, 3)
    elif x.ndim == 4:  # tokens [T, B, N, C] -> [T, B, C, N]
        x = x.transpose(0, 1, 3, 2)
    return x.reshape(reference.shape)  # [T, B, C, N] from a grid; [T*B, C, N]


def test_architecture_is_inferred_from_the_fixture():
    npz, config = load_fixture(FIXTURE)
    state_dict = state_dict_of(npz)
    model_config, num_classes, notes = qkformer_weights.infer_architecture(state_dict)
    builder = config["builder_cfg"]
    assert model_config["flavour"] == "cifar"
    assert model_config["hidden_dim"] == builder["embed_dims"]
    assert model_config["stage_depths"] == [1, 1, builder["depths"] - 2]
    assert model_config["num_heads"] == builder["num_heads"]
    assert model_config["mlp_ratio"] == builder["mlp_ratios"]
    assert num_classes == builder["num_classes"]
    assert notes["num_heads"] == "cifar reference default"
    model = build_model(state_dict, num_timesteps=config["T"])
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == config["params_total"] == 140_306


def test_eval_logits_and_every_spike_match():
    model, npz = fixture_model()
    modules = qkformer_weights.reference_module_map(model)
    with record_spikes() as record:
        logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
    spike_keys = [k for k in npz.files if k.startswith("lif/")]
    assert len(spike_keys) == 28
    for key in spike_keys:
        reference = npz[key]
        ours = to_reference_layout(
            ops.convert_to_numpy(record.last(modules[key[4:]])), reference
        )
        flips = int(np.sum(ours != reference))
        assert flips == 0, f"{key}: {flips} spikes differ from the reference"


def test_predict_is_exact_under_compilation():
    model, npz = fixture_model()
    logits = model.predict(images_of(npz), verbose=0)
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_train_step_loss_and_gradients_match():
    model, npz = fixture_model()
    labels = npz["train/labels"].astype("int32")
    loss, _, grads, grad_input = loss_and_gradients(model, images_of(npz), labels)
    np.testing.assert_allclose(loss, float(npz["train/loss"]), rtol=1e-4)

    by_variable = {id(v): g for v, g in zip(model.trainable_variables, grads, strict=False)}
    variables = qkformer_weights.reference_variable_map(model)
    compared = 0
    for key in (k for k in npz.files if k.startswith("grad/") and k != "grad/input"):
        name = key[len("grad/") :]
        variable = variables[name]
        reference = qkformer_weights.to_keras_layout(
            name, npz[key], tuple(variable.shape)
        )
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


def test_train_step_updates_batch_norm_statistics_like_the_reference():
    model, npz = fixture_model()
    model(images_of(npz), training=True)
    variables = qkformer_weights.reference_variable_map(model)
    for key in (k for k in npz.files if k.startswith("train/buffers_after/")):
        name = key[len("train/buffers_after/") :]
        if qkformer_weights.is_ignored(name):
            continue
        ours = ops.convert_to_numpy(variables[name])
        if name.endswith("running_var"):
            continue  # the reference keeps the unbiased batch variance, Keras the biased one
        np.testing.assert_allclose(ours, npz[key], rtol=1e-5, atol=1e-6, err_msg=name)
