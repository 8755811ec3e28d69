"""`model.stream()`: event frames one at a time, the refusals and the input checks."""

import keras
import numpy as np
import pytest
from keras import ops
from test_streaming_exactness import multi_step, stepwise

from keras_spikformer import ImageClassifier
from keras_spikformer.neurons import CarriedMembranes
from keras_spikformer.testing.tiny_models import (
    tiny_frames_spikformer,
    zero_initialisers,
)


def frames_model(num_timesteps=3):
    """A tiny event-frame Spikformer whose weights lie on a 1/8 grid (sums exact)."""
    model = tiny_frames_spikformer(num_timesteps, num_classes=5)
    rng = np.random.default_rng(3)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(np.full(v.shape, 0.25 - 1e-5, "float32"))  # 1/sqrt = 2
        else:
            v.assign(np.round(rng.normal(0, 0.5, v.shape) * 8) / 8)
    return model


def test_event_frames_one_at_a_time_give_the_multi_step_spikes_and_logits():
    model = frames_model()
    frames = np.random.default_rng(0).integers(0, 4, (2, 3, 8, 8, 2)).astype("float32")
    logits, spikes = multi_step(model, frames)
    with zero_initialisers():  # the copy's weights are the model's
        stream = model.stream(batch_size=2)
    steps = stepwise(stream, [frames[:, t] for t in range(3)])
    assert len(steps[0][1]) == len(spikes) > 0
    for i, reference in enumerate(spikes):
        ours = np.concatenate([ops.convert_to_numpy(s[i]) for _, s in steps], axis=1)
        np.testing.assert_array_equal(ours, ops.convert_to_numpy(reference))
    for t in range(3):  # the stateful stream
        out = stream.step(frames[:, t])
    np.testing.assert_allclose(
        ops.convert_to_numpy(out["mean_logits"]),
        ops.convert_to_numpy(logits),
        rtol=0,
        atol=1e-6,
    )
    assert out["logits"].shape == (2, 5) and float(out["steps"]) == 3
    # The state lives in non-trainable variables of the stream's batch size.
    assert all(not v.trainable for v in stream.state_variables)
    membranes = stream.state["membranes"]
    assert membranes and all(v.shape[0] == 2 for v in membranes.values())


@pytest.mark.backend_independent
def test_step_inputs_and_options_are_checked():
    model = frames_model(num_timesteps=2)
    stream = model.stream(batch_size=2, jit_compile=False)
    with pytest.raises(ValueError, match=r"not all frames"):
        stream.step(np.zeros((2, 2, 8, 8, 2), "float32"))
    with pytest.raises(ValueError, match=r"model.stream\(batch_size"):
        stream.step(np.zeros((3, 8, 8, 2), "float32"))
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="batch_size"):
            model.stream(batch_size=bad)
    with pytest.raises(ValueError, match="jit_compile"):
        model.stream(batch_size=1, jit_compile="yes")
    # A state from another model is refused, not silently half-used.
    state = stream.network.initial_state()
    state["membranes"]["999/other_lif"] = state["membranes"][
        next(iter(state["membranes"]))
    ]
    with pytest.raises(ValueError, match="another model"):
        stream.network.step(state, np.zeros((2, 8, 8, 2), "float32"))
    with pytest.raises(TypeError, match="classifier of this package"):
        from keras_spikformer.streaming import Stream

        Stream(model.backbone, 1)


@pytest.mark.backend_independent
def test_models_that_cannot_stream_say_why():
    qkformer = ImageClassifier.from_preset("qkformer_tiny_cifar", load_weights=False)
    with pytest.raises(ValueError, match="batch_spanning_projection=False"):
        qkformer.stream(batch_size=1)
    e3 = ImageClassifier.from_preset("e_spikeformer_tiny_imagenet", load_weights=False)
    with pytest.raises(ValueError, match="nothing to stream"):
        e3.stream(batch_size=1)
    with CarriedMembranes():
        with pytest.raises(ValueError, match="batch_spanning_projection=False"):
            qkformer(np.zeros((1,) + qkformer.image_shape, "float32"))


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="jax.lax.scan over the pure step"
)
def test_the_pure_step_runs_in_a_jax_scan():
    import jax

    model = frames_model()
    frames = np.random.default_rng(0).integers(0, 4, (2, 3, 8, 8, 2)).astype("float32")
    with zero_initialisers():
        stream = model.stream(batch_size=2)
    step = stream.step_function()
    state, outputs = jax.jit(lambda s, xs: jax.lax.scan(step, s, xs))(
        stream.network.initial_state(), np.swapaxes(frames, 0, 1)
    )
    logits, _ = multi_step(model, frames)
    np.testing.assert_allclose(outputs["mean_logits"][-1], logits, rtol=0, atol=1e-6)
    assert float(state["steps"]) == 3 and outputs["logits"].shape == (3, 2, 5)
