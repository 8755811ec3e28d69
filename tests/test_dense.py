import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer import SpikingDense
from keras_spikformer.layers.dense import Dense, dense_matmul
from keras_spikformer.testing import vector_jacobian


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_equals_keras_dense_outputs_and_gradients(use_bias):
    rng = np.random.default_rng(0)
    x = (rng.random((3, 5, 8)) > 0.6).astype("float32")  # spikes, as in the model
    upstream = rng.normal(size=(3, 5, 6)).astype("float32")
    ours = Dense(6, use_bias=use_bias)
    reference = keras.layers.Dense(6, use_bias=use_bias)
    for layer in (ours, reference):
        layer.build(x.shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in ours.weights]
    for layer in (ours, reference):
        layer.set_weights(weights)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ours(x)),
        ops.convert_to_numpy(reference(x)),
        rtol=1e-6,
        atol=1e-6,
    )
    # The layer (custom gradient on JAX, Keras's call elsewhere); on JAX the
    # explicit-gradient function is also checked directly.
    results = [vector_jacobian(ours, x, upstream, ours)]
    if keras.backend.backend() == "jax":
        results.append(
            vector_jacobian(
                lambda t: dense_matmul(t, ours.kernel, ours.bias), x, upstream, ours
            )
        )
    ref_dx, ref_dvars = vector_jacobian(reference, x, upstream, reference)
    assert len(ref_dvars) == (2 if use_bias else 1)
    for dx, dvars in results:
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
        for got, want in zip(dvars, ref_dvars, strict=True):  # kernel, bias
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.backend_independent
def test_spiking_dense_uses_the_explicit_gradient_dense():
    unit = SpikingDense(4)
    unit.build((2, 3, 5, 8))
    assert type(unit.synapse) is Dense
    assert unit.synapse.name == "dense"  # checkpoint names unchanged
    assert [v.path.split("/")[-1] for v in unit.synapse.weights] == ["kernel", "bias"]
