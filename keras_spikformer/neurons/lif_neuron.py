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

    def _reset(self, h, s):
        if self.v_reset is None:
            return h - self.v_threshold * s
        return h * (1.0 - s) + self.v_reset * s

    def _reset_gradient(self, h, s, surrogate_grad):
        """d V[t] / d H[t] (with `detach_reset`, the spike is a constant)."""
        if self.v_reset is None:
            if self.detach_reset:
                return None  # 1
            return 1.0 - self.v_threshold * surrogate_grad
        keep = 1.0 - s
        if self.detach_reset:
            return keep
        return keep + (self.v_reset - h) * surrogate_grad

    def call(self, inputs):
        outputs = ops.cast(self._fire(ops.cast(inputs, "float32")), self.compute_dtype)
        notify(self, outputs)
        return outputs

    def _fire(self, inputs):
        # One custom gradient for the whole time loop (backpropagation through
        # time in closed form, as SpikingJelly's CUDA kernels do). Autodiff of
        # the unrolled loop makes XLA recompute the forward recurrence inside
        # every backward fusion; this keeps H[t] and S[t] and runs one reverse
        # loop instead.
        decay = 1.0 - 1.0 / self.tau
        input_scale = 1.0 / self.tau if self.decay_input else 1.0

        @ops.custom_gradient
        def fire(x):
            v = ops.zeros_like(x[:, 0])
            if self.v_reset:
                v = v + self.v_reset
            potentials, spikes = [], []
            for x_t in ops.unstack(x, axis=1):
                h = self._charge(v, x_t)
                s = ops.cast(ops.greater_equal(h - self.v_threshold, 0.0), h.dtype)
                v = self._reset(h, s)
                potentials.append(h)
                spikes.append(s)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                upstream = ops.unstack(upstream, axis=1)
                grad_v = None  # dL/dV[t], flowing back from step t + 1
                grads = []
                for t in reversed(range(len(potentials))):
                    h, s = potentials[t], spikes[t]
                    surrogate_grad = self.surrogate.derivative(h - self.v_threshold)
                    grad_h = upstream[t] * surrogate_grad
                    if grad_v is not None:
                        through_reset = self._reset_gradient(h, s, surrogate_grad)
                        if through_reset is not None:
                            grad_v = grad_v * through_reset
                        grad_h = grad_h + grad_v
                    grads.append(grad_h * input_scale)
                    grad_v = grad_h * decay
                return ops.stack(grads[::-1], axis=1)

            return ops.stack(spikes, axis=1), grad

        return fire(inputs)

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
