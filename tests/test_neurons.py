import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer import ATanSurrogate, LIFNeuron, SigmoidSurrogate, record_spikes
from keras_spikformer.neurons import get_surrogate
from keras_spikformer.testing import (
    run_layer_test,
    run_serialization_test,
    vector_jacobian,
)


def simulate_lif(x, tau=2.0, v_th=1.0, v_reset=0.0, decay_input=True):
    """Plain-numpy LIF over axis 1, written from SpikingJelly's equations."""
    v = np.full_like(x[:, 0], 0.0 if v_reset is None else v_reset)
    spikes = []
    for t in range(x.shape[1]):
        base = 0.0 if v_reset is None else v_reset
        if decay_input:
            h = v + (x[:, t] - (v - base)) / tau
        else:
            h = v - (v - base) / tau + x[:, t]
        s = (h >= v_th).astype(x.dtype)
        v = h - v_th * s if v_reset is None else h * (1 - s) + v_reset * s
        spikes.append(s)
    return np.stack(spikes, axis=1)


def test_lif_hand_computed_sequence():
    # Constant input 1.5, tau 2: H = 0.75 (no spike), 1.125 (spike, reset),
    # 0.75, 1.125 ... ; a tie at exactly v_th fires.
    x = np.array(
        [[[1.5], [1.5], [1.5], [1.5]], [[2.0], [0.0], [2.0], [2.0]]], "float32"
    )
    out = ops.convert_to_numpy(LIFNeuron()(x))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 0, 1])
    np.testing.assert_array_equal(out[1, :, 0], [1, 0, 1, 1])  # H = 1.0 >= 1.0 fires


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"v_reset": None},
        {"decay_input": False},
        {"decay_input": False, "v_reset": -0.2},
        {"tau": 3.0, "v_threshold": 0.5, "v_reset": 0.1},
    ],
)
def test_lif_matches_numpy_simulation(kwargs):
    x = np.random.default_rng(0).normal(0.8, 1.0, (3, 6, 5, 7)).astype("float32")
    out = ops.convert_to_numpy(LIFNeuron(**kwargs)(x))
    expected = simulate_lif(
        x,
        tau=kwargs.get("tau", 2.0),
        v_th=kwargs.get("v_threshold", 1.0),
        v_reset=kwargs.get("v_reset", 0.0),
        decay_input=kwargs.get("decay_input", True),
    )
    np.testing.assert_array_equal(out, expected)


def test_lif_state_does_not_leak_between_calls():
    lif = LIFNeuron()
    x = np.full((1, 3, 4), 0.9, "float32")
    first = ops.convert_to_numpy(lif(x))
    second = ops.convert_to_numpy(lif(x))
    np.testing.assert_array_equal(first, second)


def test_lif_rejects_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="tau"):
        LIFNeuron(tau=1.0)
    with pytest.raises(ValueError, match="time"):
        LIFNeuron()(np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match="surrogate"):
        LIFNeuron(surrogate="relu")


def test_lif_layer_contract():
    run_layer_test(
        LIFNeuron, {"v_threshold": 0.5}, (2, 3, 4, 8), (2, 3, 4, 8), run_training=False
    )
    run_serialization_test(LIFNeuron(surrogate=ATanSurrogate(alpha=3.0), v_reset=None))


def test_lif_mixed_precision_keeps_float32_membrane():
    # Inputs on the bfloat16 grid reach the neuron unchanged; with a float32
    # membrane the spikes then equal the float32 layer's (a bfloat16 membrane
    # rounds the charge and flips some of them).
    x = np.random.default_rng(2).normal(0.9, 0.7, (64, 8, 32)).astype("float32")
    x = ops.convert_to_numpy(ops.cast(ops.cast(x, "bfloat16"), "float32"))
    mixed = LIFNeuron(dtype="mixed_bfloat16")(x)
    assert ops.dtype(mixed) == "bfloat16"
    np.testing.assert_array_equal(
        ops.convert_to_numpy(ops.cast(mixed, "float32")),
        ops.convert_to_numpy(LIFNeuron()(x)),
    )


def _grad(fn, x, upstream=1.0):
    return vector_jacobian(fn, x, upstream)[0]


def unrolled_lif(lif, x):
    """The LIF loop written step by step and differentiated by autodiff."""
    x = ops.convert_to_tensor(x)
    v = ops.zeros_like(x[:, 0]) + (lif.v_reset or 0.0)
    spikes = []
    for t in range(x.shape[1]):
        h = lif._charge(v, x[:, t])
        s = lif.surrogate(h - lif.v_threshold)
        s_reset = ops.stop_gradient(s) if lif.detach_reset else s
        if lif.v_reset is None:
            v = h - lif.v_threshold * s_reset
        else:
            v = h * (1.0 - s_reset) + lif.v_reset * s_reset
        spikes.append(s)
    return ops.stack(spikes, axis=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"detach_reset": False},
        {"v_reset": None},
        {"v_reset": None, "detach_reset": False},
        {"v_reset": -0.2, "decay_input": False, "detach_reset": False},
        {"tau": 3.0, "surrogate": "atan", "v_threshold": 0.5},
    ],
)
def test_lif_closed_form_gradient_matches_autodiff_of_the_loop(kwargs):
    # The layer backpropagates through time in closed form (one custom
    # gradient for the whole loop); it must equal autodiff of the plain loop.
    rng = np.random.default_rng(3)
    x = rng.normal(0.8, 1.0, (3, 6, 5, 7)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    lif = LIFNeuron(**kwargs)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(lif(x)), ops.convert_to_numpy(unrolled_lif(lif, x))
    )
    np.testing.assert_allclose(
        _grad(lif, x, upstream),
        _grad(lambda t: unrolled_lif(lif, t), x, upstream),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "surrogate, derivative",
    [
        (
            SigmoidSurrogate(),
            lambda x: 4 / (1 + np.exp(-4 * x)) * (1 - 1 / (1 + np.exp(-4 * x))),
        ),
        (
            SigmoidSurrogate(alpha=2.0),
            lambda x: 2 / (1 + np.exp(-2 * x)) * (1 - 1 / (1 + np.exp(-2 * x))),
        ),
        (ATanSurrogate(), lambda x: 2 / 2 / (1 + (math.pi / 2 * 2 * x) ** 2)),
    ],
)
def test_surrogate_forward_and_gradient(surrogate, derivative):
    x = np.linspace(-2, 2, 41).astype("float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(surrogate(x)), (x >= 0).astype("float32")
    )
    # float32 sg * (1 - sg) cancels for large x, as it does in SpikingJelly.
    np.testing.assert_allclose(_grad(surrogate, x), derivative(x), rtol=1e-5, atol=1e-6)


def test_surrogate_lookup_and_serialization():
    assert get_surrogate("sigmoid") == SigmoidSurrogate(4.0)
    assert get_surrogate("ATan") == ATanSurrogate(2.0)
    custom = ATanSurrogate(alpha=5.0)
    restored = get_surrogate(keras.saving.serialize_keras_object(custom))
    assert restored == custom
    config = LIFNeuron(surrogate=custom).get_config()
    assert LIFNeuron.from_config(config).surrogate == custom


def test_detach_reset_changes_only_the_gradient():
    x = np.random.default_rng(1).normal(1.0, 1.0, (2, 4, 6)).astype("float32")
    detached, attached = LIFNeuron(detach_reset=True), LIFNeuron(detach_reset=False)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(detached(x)), ops.convert_to_numpy(attached(x))
    )
    assert not np.allclose(_grad(detached, x), _grad(attached, x))


def test_record_spikes_captures_eager_calls_only_inside_block():
    lif = LIFNeuron()
    x = np.ones((1, 2, 3), "float32") * 2.5
    with record_spikes() as record:
        out = lif(x)
    lif(x)
    assert list(record) == [lif] and len(record[lif]) == 1
    np.testing.assert_array_equal(
        ops.convert_to_numpy(record.last(lif)), ops.convert_to_numpy(out)
    )
