"""The E-SpikeFormer integer spike neuron: both rounding conventions, both STE bounds, binary expansion."""

import numpy as np
import pytest
from keras import ops

from keras_spikformer.neurons import IntegerSpikeNeuron, binary_expansion
from keras_spikformer.testing import run_serialization_test, vector_jacobian

BASE = {"rounding": "half_even", "gradient_bounds": "inclusive"}
LARGE = {"rounding": "half_up", "gradient_bounds": "exclusive"}
# Ties k + 0.5, the clip ends 0 and D, values outside and inside.
X = np.array([0.5, 1.5, 2.5, 3.5, 0.0, 4.0, -0.75, 5.2, 1.2, 2.7], "float32")


def test_base_rounds_half_to_even():
    y = ops.convert_to_numpy(IntegerSpikeNeuron(4, **BASE)(X))
    np.testing.assert_array_equal(y * 4, [0, 2, 2, 4, 0, 4, 0, 4, 1, 3])


def test_large_rounds_half_up():
    y = ops.convert_to_numpy(IntegerSpikeNeuron(4, **LARGE)(X))
    np.testing.assert_array_equal(y * 4, [1, 2, 3, 4, 0, 4, 0, 4, 1, 3])


def test_norm_one_gives_integers_and_clips_at_the_levels():
    y = ops.convert_to_numpy(IntegerSpikeNeuron(8, norm=1.0, **LARGE)(X * 3))
    np.testing.assert_array_equal(y, [2, 5, 8, 8, 0, 8, 0, 8, 4, 8])


def test_inclusive_gradient_passes_at_both_clip_ends():
    dx, _ = vector_jacobian(IntegerSpikeNeuron(4, **BASE), X)
    np.testing.assert_array_equal(dx, [0.25] * 6 + [0, 0, 0.25, 0.25])


def test_exclusive_gradient_stops_at_both_clip_ends():
    dx, _ = vector_jacobian(IntegerSpikeNeuron(4, **LARGE), X)
    np.testing.assert_array_equal(dx, [0.25] * 4 + [0, 0, 0, 0, 0.25, 0.25])


def test_bad_conventions_are_refused_by_name():
    with pytest.raises(ValueError, match="rounding"):
        IntegerSpikeNeuron(4, rounding="nearest")
    with pytest.raises(ValueError, match="gradient_bounds"):
        IntegerSpikeNeuron(4, gradient_bounds="open")
    with pytest.raises(ValueError, match="spike_levels"):
        IntegerSpikeNeuron(0)


def test_serialization_round_trip():
    run_serialization_test(IntegerSpikeNeuron(8, norm=1.0, **LARGE))


def test_binary_expansion_is_front_loaded_and_sums_to_the_levels():
    levels = np.array(
        [[[0.0, 3.0], [4.0, 1.0]], [[2.0, 2.0], [0.0, 4.0]]]
    )  # [T=2, B, C]
    steps = ops.convert_to_numpy(binary_expansion(levels, 4, time_axis=0))
    assert steps.shape == (8, 2, 2)
    # Index t * D + k; step k fires iff k < n.
    np.testing.assert_array_equal(steps[0:4, 0, 1], [1, 1, 1, 0])
    np.testing.assert_array_equal(steps[4:8, 1, 1], [1, 1, 1, 1])
    np.testing.assert_array_equal(steps.reshape(2, 4, 2, 2).sum(axis=1), levels)
    flat = ops.convert_to_numpy(binary_expansion(levels[0], 4))
    assert flat.shape == (4, 2, 2) and set(np.unique(flat)) <= {0.0, 1.0}
    np.testing.assert_array_equal(flat.sum(axis=0), levels[0])
