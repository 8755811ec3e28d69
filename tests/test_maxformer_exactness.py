"""Max-Former: the reference's weights give its logits, spike for spike, and its gradients.

`data/maxformer_small.*` are copies of ../shared/fixtures/successors/ (the
reference `imagenet/max_former.py` of bic-L/MaxFormer run unchanged: width 64
(stages 16/32/64), 1+2+2 blocks, one stage-3 head, 64x64, T=2, 10 classes).
Weights lie on a coarse grid so that every sum over spikes is exact in
float32; the max pools see many tied windows, so the gradients check
PyTorch's first-maximum routing.
"""

import json

import numpy as np
from conftest import images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import maxformer_weights
from keras_spikformer.convert.reference_weights import load_reference_weights
from keras_spikformer.models.maxformer import MaxFormer, MaxFormerBackbone
from keras_spikformer.testing import loss_and_gradients
from keras_spikformer.testing.tiny_models import zero_initialisers

FIXTURE = "maxformer_small"


def fixture_model():
    npz, config = load_fixture(FIXTURE)
    state_dict = state_dict_of(npz)
    backbone_config, num_classes, _ = maxformer_weights.infer_architecture(
        state_dict, num_timesteps=config["T"], image_shape=(64, 64, 3)
    )
    with zero_initialisers():
        backbone = MaxFormerBackbone(**backbone_config)
        model = MaxFormer(backbone, num_classes=num_classes)
    report = load_reference_weights(model, state_dict)
    assert report.ok and not report.by_position
    return model, npz


def to_reference_layout(spikes, reference):
    """Our `[B, T, ...]` channels-last spikes in the reference's `[T, B, C, ...]`."""
    x = np.swapaxes(np.asarray(spikes), 0, 1)
    if x.ndim == 5:  # [T, B, H, W, C] -> [T, B, C, H, W]
        x = x.transpose(0, 1, 4, 2, 3)
    elif x.ndim == 4:  # tokens [T, B, N, C] -> [T, B, C, N]
        x = x.transpose(0, 1, 3, 2)
    return x.reshape(reference.shape)


def test_architecture_is_inferred_from_the_fixture():
    npz, config = load_fixture(FIXTURE)
    model_config, num_classes, _ = maxformer_weights.infer_architecture(
        state_dict_of(npz)
    )
    assert model_config["hidden_dim"] == config["builder_kwargs"]["embed_dims"]
    assert model_config["stage_depths"] == config["depths"]
    assert model_config["num_heads"] == config["num_heads"]["stage3"]
    assert model_config["mlp_ratio"] == config["builder_kwargs"]["mlp_ratios"]
    assert num_classes == config["num_classes"]
    model, _ = fixture_model()
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == config["params_total"] == 200_450


def test_eval_logits_and_every_spike_match():
    model, npz = fixture_model()
    modules = maxformer_weights.reference_module_map(model)
    with record_spikes() as record:
        logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
    spike_keys = [k for k in npz.files if k.startswith("lif/")]
    assert len(spike_keys) == 30
    for key in spike_keys:
        reference = npz[key]
        ours = to_reference_layout(
            ops.convert_to_numpy(record.last(modules[key[4:]])), reference
        )
        flips = int(np.sum(ours != reference))
        assert flips == 0, f"{key}: {flips} spikes differ from the reference"


def test_train_step_loss_and_gradients_match_with_max_pool_ties():
    model, npz = fixture_model()
    labels = npz["train/labels"].astype("int32")
    loss, logits, grads, grad_input = loss_and_gradients(model, images_of(npz), labels)
    np.testing.assert_allclose(logits, npz["train/logits"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(loss, float(npz["train/loss"]), rtol=1e-5)

    zero = json.loads(str(npz["config_json"]))["fp64_check_train"]
    zero = zero["zero_grad_params_fp32_absmax"]
    assert len(zero) == 15
    by_variable = {
        id(v): g for v, g in zip(model.trainable_variables, grads, strict=True)
    }
    variables = maxformer_weights.reference_variable_map(model)
    compared = 0
    for key in (k for k in npz.files if k.startswith("grad/") and k != "grad/input"):
        name = key[len("grad/") :]
        variable = variables[name]
        reference = maxformer_weights.to_keras_layout(
            name, npz[key], tuple(variable.shape)
        )
        ours = by_variable[id(variable)]
        ours = np.zeros_like(reference) if ours is None else np.asarray(ours)
        if name in zero:  # biases in front of a train-mode BN: 0 up to float noise
            assert np.abs(ours).max() <= 1e-6, name
        else:  # 1e-5 of the tensor's scale (the fp64 run agrees to 1.4e-6)
            tolerance = 1e-5 * np.abs(reference).max()
            error = np.abs(ours - reference).max()
            assert error <= tolerance, f"{name}: {error} > {tolerance}"
        compared += 1
    assert compared == len(model.trainable_variables)
    grad_input = grad_input.transpose(0, 3, 1, 2)  # NHWC -> NCHW, summed over T
    reference = npz["grad/input"]
    assert np.abs(grad_input - reference).max() <= 1e-5 * np.abs(reference).max()


def test_train_step_updates_batch_norm_statistics_like_the_reference():
    model, npz = fixture_model()
    model(images_of(npz), training=True)
    variables = maxformer_weights.reference_variable_map(model)
    for key in (k for k in npz.files if k.startswith("train/buffers_after/")):
        name = key[len("train/buffers_after/") :]
        if maxformer_weights.is_ignored(name) or name.endswith("running_var"):
            continue  # the reference keeps the unbiased batch variance, Keras the biased one
        ours = ops.convert_to_numpy(variables[name])
        np.testing.assert_allclose(ours, npz[key], rtol=1e-5, atol=1e-6, err_msg=name)
