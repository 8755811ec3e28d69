"""Streaming: the T inputs fed one step at a time give the multi-step model's
spikes at every step and its logits at step T, on every family's reference
fixture (eval mode). The state carries over between steps and `reset_state`
starts a new sequence.
"""

import keras
import numpy as np
import pytest
from conftest import FIXTURE_PRESETS, images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import Spikformer, record_spikes
from keras_spikformer.convert import load_reference_weights

EXACT = 0.0 if keras.backend.backend() == "tensorflow" else 1e-5


@pytest.fixture(autouse=True)
def _zero_initialisers():
    """Every variable is overwritten by a fixture: skip the random kernels
    (JAX compiles one per weight shape)."""
    from keras_spikformer.testing.tiny_models import zero_initialisers

    with zero_initialisers():
        yield


def spikformer_model():
    npz, _ = load_fixture("cifar10_small")
    model = Spikformer.from_preset(
        FIXTURE_PRESETS["cifar10_small"], load_weights=False, preprocessor=None
    )
    load_reference_weights(model, state_dict_of(npz))
    return model, images_of(npz)


def sdt_model():
    from test_spike_driven_transformer_exactness import fixture_model

    model, npz = fixture_model()
    return model, images_of(npz)


def meta_model():
    from keras_spikformer.convert import meta_spikeformer_weights as weights
    from keras_spikformer.models.meta_spikeformer import (
        MetaSpikeFormer,
        MetaSpikeFormerBackbone,
    )

    npz, _ = load_fixture("sdt_v2_small")
    config, num_classes, _ = weights.infer_architecture(
        state_dict_of(npz), num_heads=4, num_timesteps=2, image_shape=(64, 64, 3)
    )
    kd = config.pop("distillation_head")
    model = MetaSpikeFormer(MetaSpikeFormerBackbone(**config), num_classes, kd)
    load_reference_weights(model, state_dict_of(npz))
    return model, images_of(npz)


def qkformer_model():
    """The fixture's weights without the batch-spanning projection neuron
    (which cannot stream): compared with the multi-step model of the same
    option, not with the reference's logits."""
    from test_qkformer_exactness import build_model, load

    npz, config = load_fixture("qkformer_small")
    state_dict = state_dict_of(npz)
    model = build_model(
        state_dict, num_timesteps=config["T"], batch_spanning_projection=False
    )
    load(model, state_dict)
    return model, images_of(npz)


def maxformer_model():
    from test_maxformer_exactness import fixture_model

    model, npz = fixture_model()
    return model, images_of(npz)


FAMILIES = {
    "spikformer": spikformer_model,
    "sdt_v1": sdt_model,
    "meta_spikeformer": meta_model,
    "qkformer": qkformer_model,
    "maxformer": maxformer_model,
}


def maybe_jit(fn):
    if keras.backend.backend() != "jax":
        return fn
    import jax

    return jax.jit(fn)  # eager JAX runs op by op: minutes for the bigger fixtures


def values(model):
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )


def multi_step(model, images):
    """Logits and every neuron's spikes (in call order) of the multi-step model."""

    def run(variables, x):
        with record_spikes() as record:
            logits, _ = model.stateless_call(*variables, x, training=False)
        return logits, [spikes[-1] for spikes in record.values()]

    return maybe_jit(run)(values(model), images)


def stepwise(stream, inputs):
    """Outputs and spikes of each step of the stream's pure step function,
    one step per element of `inputs`."""
    network = stream.network

    def run(variables, state, x):
        with record_spikes() as record:
            state, outputs = network.step(state, x, variables=variables)
        return state, outputs, [spikes[-1] for spikes in record.values()]

    run = maybe_jit(run)
    state, steps = network.initial_state(), []
    for x in inputs:
        state, outputs, spikes = run(values(network.network), state, x)
        steps.append((outputs, spikes))
    return steps


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_step_by_step_gives_every_spike_and_the_logits(family):
    model, images = FAMILIES[family]()
    num_steps = model.backbone.num_timesteps
    logits, spikes = multi_step(model, images)
    stream = model.stream(batch_size=images.shape[0])
    steps = stepwise(stream, [images] * num_steps)

    assert len(steps[0][1]) == len(spikes) > 0
    for i, reference in enumerate(spikes):
        reference = ops.convert_to_numpy(reference)
        assert reference.shape[1] == num_steps
        ours = np.concatenate([ops.convert_to_numpy(s[i]) for _, s in steps], axis=1)
        flips = int(np.sum(ours != reference))
        assert flips == 0, (
            f"neuron {i}: {flips} spikes differ from the multi-step model"
        )
    final = ops.convert_to_numpy(steps[-1][0]["mean_logits"])
    assert np.max(np.abs(final - ops.convert_to_numpy(logits))) <= EXACT
    assert float(steps[-1][0]["steps"]) == num_steps

    # The stateful stream: the same result; the state carries over unless reset.
    for _ in range(num_steps):
        out = stream.step(images)
    first = ops.convert_to_numpy(out["mean_logits"])
    np.testing.assert_allclose(first, final, rtol=0, atol=EXACT)
    carried = [ops.convert_to_numpy(stream.step(images)["logits"])]
    stream.reset_state()
    fresh = [ops.convert_to_numpy(stream.step(images)["logits"])]
    assert not np.array_equal(carried[0], fresh[0]), "the membranes did not carry over"
    for _ in range(num_steps - 1):
        out = stream.step(images)
    np.testing.assert_array_equal(ops.convert_to_numpy(out["mean_logits"]), first)
