"""Fused inference: batch norms folded into the preceding dense/conv layers give
the unfused model's spikes and logits (every family's reference fixture)."""

import keras
import numpy as np
import pytest
from conftest import images_of, load_fixture
from keras import ops
from test_reference_exactness import fixture_model

from keras_spikformer import Spikformer, record_spikes
from keras_spikformer.inference import folded_weights, fuse, refresh


def spikes_and_logits(model, images):
    """Eval logits and every neuron's spikes, keyed by the neuron's path
    (one compiled call on JAX, whose eager dispatch takes minutes here)."""

    def run(*state_and_inputs):
        with record_spikes() as record:
            if state_and_inputs[:-1]:
                logits, _ = model.stateless_call(*state_and_inputs)
            else:
                logits = model(state_and_inputs[-1], training=False)
        return logits, {layer.path: s[-1] for layer, s in record.items()}

    if keras.backend.backend() == "jax":
        import jax

        logits, spikes = jax.jit(run)(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            images,
        )
    else:
        logits, spikes = run(images)
    spikes = {path: ops.convert_to_numpy(s) for path, s in spikes.items()}
    return ops.convert_to_numpy(logits), spikes


def batch_norms(model):
    return [
        layer.path
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def assert_fused_matches(model, images, reference_logits=None, bn_left=0):
    fused = fuse(model)
    assert len(batch_norms(fused)) == bn_left
    assert fused.fold_plan and not fused.trainable_variables
    assert len(fused.variables) < len(model.variables)
    logits, spikes = spikes_and_logits(model, images)
    fused_logits, fused_spikes = spikes_and_logits(fused, images)
    np.testing.assert_allclose(fused_logits, logits, rtol=0, atol=1e-5)
    if reference_logits is not None:
        np.testing.assert_allclose(fused_logits, reference_logits, rtol=0, atol=1e-5)
    assert fused_spikes.keys() == spikes.keys() and spikes
    for path, ours in spikes.items():
        flips = int(np.sum(fused_spikes[path] != ours))
        assert flips == 0, f"{path}: {flips} spikes differ after folding"
    return fused


# The quick loop (JAX and torch in CI) checks one fixture; TensorFlow runs all.
@pytest.mark.parametrize(
    "name", ["cifar10_small", pytest.param("imagenet_small", marks=pytest.mark.large)]
)
def test_spikformer_fixture_fused_spikes_and_logits(name):
    model, npz = fixture_model(name)
    fused = assert_fused_matches(model, images_of(npz), npz["logits"])
    assert len(fused.fold_plan) == len(batch_norms(model)) == 11
    # Compiled: `predict(fused=True)` gives the reference's logits too.
    logits = model.predict(images_of(npz), fused=True, verbose=0)
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


@pytest.mark.large
def test_spike_driven_transformer_fixture_fused():
    from test_spike_driven_transformer_exactness import fixture_model as sdt_model

    model, npz = sdt_model()
    assert_fused_matches(model, images_of(npz), npz["logits"])


@pytest.mark.large
def test_qkformer_fixture_fused():
    from test_qkformer_exactness import fixture_model as qkformer_model

    model, npz = qkformer_model()
    assert_fused_matches(model, images_of(npz), npz["logits"])


@pytest.mark.large
def test_meta_spikeformer_fixture_fused():
    import test_meta_spikeformer_exactness as meta

    from keras_spikformer.convert import load_reference_weights
    from keras_spikformer.convert import meta_spikeformer_weights as weights
    from keras_spikformer.models.meta_spikeformer import (
        MetaSpikeFormer,
        MetaSpikeFormerBackbone,
    )

    npz = np.load(meta.NPZ)
    state_dict = meta.state_dict_of(npz)
    config, num_classes, _ = weights.infer_architecture(state_dict, **meta.ARCHITECTURE)
    kd = config.pop("distillation_head")
    model = MetaSpikeFormer(MetaSpikeFormerBackbone(**config), num_classes, kd)
    load_reference_weights(model, state_dict)
    # RepConv's BN-and-pad layers (one per RepConv) stay: their border is a
    # batch-norm value, not a linear output.
    repconvs = [p for p in batch_norms(model) if p.endswith("bn_pad/bn")]
    assert_fused_matches(
        model, meta.images_of(npz), npz["logits"], bn_left=len(repconvs)
    )


@pytest.mark.large
def test_trained_preset_on_real_digits_agrees():
    """Trained weights are not on the fixtures' grid: folding rounds
    differently and a rare spike near threshold flips (~2 per million
    measured); predictions must agree."""
    from sklearn.datasets import load_digits

    model = Spikformer.from_preset("spikformer_tiny_digits")
    digits = load_digits()
    images = np.round(digits.images[:360, ..., None] * (255.0 / 16.0)).astype("uint8")
    x = model.preprocess(images)
    logits, spikes = spikes_and_logits(model, x)
    fused_logits, fused_spikes = spikes_and_logits(fuse(model), x)
    flips = sum(int(np.sum(fused_spikes[p] != s)) for p, s in spikes.items())
    total = sum(s.size for s in spikes.values())
    assert flips <= 1e-5 * total, f"{flips} of {total} spikes flipped"
    np.testing.assert_array_equal(fused_logits.argmax(-1), logits.argmax(-1))
    close = np.all(np.abs(fused_logits - logits) <= 1e-5, axis=-1)
    assert close.mean() >= 0.95, f"only {close.mean():.1%} of images within 1e-5"


@pytest.mark.backend_independent  # folding is numpy; no backend arithmetic checked
def test_refresh_follows_new_weights():
    model, npz = fixture_model("cifar10_small")
    fused = fuse(model)
    model(images_of(npz), training=True)  # moves every batch norm's statistics
    model.get_layer("head").kernel.assign(model.get_layer("head").kernel * 2.0)
    refresh(fused, model)
    anew = {v.path: ops.convert_to_numpy(v) for v in fuse(model).variables}
    refreshed = {v.path: ops.convert_to_numpy(v) for v in fused.variables}
    assert refreshed.keys() == anew.keys()
    for path, value in anew.items():
        np.testing.assert_array_equal(refreshed[path], value, err_msg=path)


@pytest.mark.parametrize(
    "linear",
    [
        keras.layers.Dense(6),
        keras.layers.Conv2D(6, 3, padding="same", use_bias=False),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
    ],
    ids=["dense", "conv", "depthwise"],
)
def test_folded_weights_equal_batch_norm_after_linear(linear):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    linear.build(x.shape)
    bn = keras.layers.BatchNormalization(epsilon=1e-5)
    bn.build(linear.compute_output_shape(x.shape))
    for variable in (bn.gamma, bn.beta, bn.moving_mean):
        variable.assign(rng.normal(size=variable.shape))
    bn.moving_variance.assign(rng.uniform(0.1, 2.0, size=(6,)))
    kernel, bias = folded_weights(linear, bn)
    expected = ops.convert_to_numpy(bn(linear(x), training=False))
    if isinstance(linear, keras.layers.Dense):
        folded = x @ kernel + bias
    else:
        copy = type(linear).from_config({**linear.get_config(), "use_bias": True})
        copy.build(x.shape)
        copy.set_weights([kernel.astype("float32"), bias.astype("float32")])
        folded = ops.convert_to_numpy(copy(x))
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.backend_independent  # folding is numpy; no backend arithmetic checked
def test_folding_a_non_linear_layer_is_refused():
    pool = keras.layers.MaxPooling2D()
    bn = keras.layers.BatchNormalization()
    bn.build((None, 4, 4, 3))
    with pytest.raises(TypeError, match="only Dense, Conv2D and DepthwiseConv2D"):
        folded_weights(pool, bn)


@pytest.mark.backend_independent  # folding is numpy; no backend arithmetic checked
def test_fixture_config_is_unchanged_by_fusing():
    model, npz = fixture_model("cifar10_small")
    before = [ops.convert_to_numpy(v) for v in model.variables]
    fuse(model)
    for old, variable in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(old, ops.convert_to_numpy(variable))
    _, config = load_fixture("cifar10_small")
    assert model.backbone.num_timesteps == config["T"]
