"""The torch backend's fused LIF loop equals LIFNeuron's Keras-ops loop."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer.neurons import LIFNeuron

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="torch backend's fast path"
)

CONFIGS = {
    "spikformer": {},
    "soft_tau3_atan": {
        "tau": 3.0,
        "v_threshold": 0.5,
        "v_reset": None,
        "decay_input": False,
        "detach_reset": False,
        "surrogate": "atan",
    },
}


def spikes_and_grad(neuron, x, upstream):
    import torch

    x = torch.tensor(x, requires_grad=True)
    spikes = neuron(x)
    (spikes * torch.tensor(upstream)).sum().backward()
    return ops.convert_to_numpy(spikes), x.grad.numpy()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fused_loop_matches_keras_ops_loop(name, monkeypatch):
    from keras_spikformer.neurons import lif_torch

    rng = np.random.default_rng(0)
    # Values on a 1/8 grid put many potentials exactly on the threshold.
    x = (rng.integers(-16, 24, size=(3, 4, 5, 7)) / 8).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    neuron = LIFNeuron(**CONFIGS[name])
    assert lif_torch.supports(neuron)
    fused = spikes_and_grad(neuron, x, upstream)
    inference = ops.convert_to_numpy(neuron(x))
    monkeypatch.setattr(lif_torch, "supports", lambda neuron: False)
    reference = spikes_and_grad(neuron, x, upstream)
    np.testing.assert_array_equal(fused[0], reference[0])
    np.testing.assert_array_equal(inference, reference[0])
    assert 0 < reference[0].mean() < 1
    np.testing.assert_allclose(fused[1], reference[1], rtol=1e-6, atol=1e-6)


def test_kernel_runs_eagerly_when_compilation_fails(monkeypatch):
    import torch

    from keras_spikformer.neurons import lif_torch

    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    kernel = lif_torch._Kernel(lif_torch._infer)
    x = torch.full((2, 4, 3), 1.5)
    with pytest.warns(UserWarning, match="runs eagerly|run eagerly"):
        spikes = kernel(x, 2.0, 1.0, 0.0, True)
    np.testing.assert_array_equal(spikes.numpy()[0, :, 0], [0.0, 1.0, 0.0, 1.0])
    assert kernel.failed
