"""Multi-step leaky integrate-and-fire neuron."""

import keras
from keras import ops

from keras_spikformer.neurons import surrogates
from keras_spikformer.neurons.recording import notify


@keras.saving.register_keras_serializable(package="keras_spikformer")
class LIFNeuron(keras.layers.Layer):
    """Multi-step leaky integrate-and-fire (LIF) neuron.

    Follows SpikingJelly's `MultiStepLIFNode` exactly. For each time step:

    ```
    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau    # charge
    S[t] = 1 if H[t] >= v_threshold else 0                # fire (ties fire)
    V[t] = H[t] * (1 - S[t]) + v_reset * S[t]             # hard reset
    V[t] = H[t] - v_threshold * S[t]                      # soft reset (v_reset=None)
    ```

    The membrane starts at `v_reset` (0 for soft reset) on every call, so no
    state leaks between batches. Membrane maths runs in float32 under mixed
    precision; spikes are returned in the layer's compute dtype.

    Args:
        tau: float > 1, membrane time constant. Defaults to `2.0`.
        v_threshold: float, firing threshold. Defaults to `1.0`.
        v_reset: float or `None`, reset potential; `None` selects the soft
            (subtractive) reset. Defaults to `0.0`.
        decay_input: bool, whether the input is divided by `tau` too.
            Defaults to `True`.
        detach_reset: bool, stop the gradient through the reset term.
            Defaults to `True`.
        surrogate: surrogate gradient, a name (`"sigmoid"`, `"atan"`) or a
            `Surrogate` instance. Defaults to `"sigmoid"` (alpha 4).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Input shape: `[batch, time, ...]` with a static `time`.
    Output shape: the same, holding 0/1 spikes.

    Example:
    >>> lif = LIFNeuron(tau=2.0, v_threshold=1.0)
    >>> spikes = lif(keras.random.normal((8, 4, 64, 384)))

    References:
        Zhou et al., "Spikformer: When Spiking Neural Network Meets
        Transformer", ICLR 2023 (arXiv 2209.15425); Fang et al., SpikingJelly.
    """

    def __init__(
        self,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        decay_input=True,
        detach_reset=True,
        surrogate="sigmoid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not float(tau) > 1.0:
            raise ValueError(
                f"`tau` must be greater than 1 (the membrane decays by 1/tau); "
                f"got tau={tau}. Spikformer uses tau=2.0."
            )
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.surrogate = surrogates.get(surrogate)
        self.supports_masking = False

    def build(self, input_shape):
        if len(input_shape) < 3 or input_shape[1] is None:
            raise ValueError(
                f"{self.name}: LIFNeuron expects inputs [batch, time, ...] with a "
                f"known number of time steps; got shape {tuple(input_shape)}."
            )
        self.built = True

    def _charge(self, v, x):
        reset = self.v_reset if self.v_reset else 0.0
        if self.decay_input:
            return v + (x - (v - reset)) / self.tau
        return v - (v - reset) / self.tau + x

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        v = ops.zeros_like(x[:, 0])
        if self.v_reset:
            v = v + self.v_reset
        spikes = []
        for t in range(x.shape[1]):
            h = self._charge(v, x[:, t])
            s = self.surrogate(h - self.v_threshold)
            s_reset = ops.stop_gradient(s) if self.detach_reset else s
            if self.v_reset is None:
                v = h - self.v_threshold * s_reset
            else:
                v = h * (1.0 - s_reset) + self.v_reset * s_reset
            spikes.append(s)
        outputs = ops.cast(ops.stack(spikes, axis=1), self.compute_dtype)
        notify(self, outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tau": self.tau,
                "v_threshold": self.v_threshold,
                "v_reset": self.v_reset,
                "decay_input": self.decay_input,
                "detach_reset": self.detach_reset,
                "surrogate": surrogates.serialize(self.surrogate),
            }
        )
        return config
