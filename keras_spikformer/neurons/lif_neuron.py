"""Multi-step leaky integrate-and-fire neuron."""

import keras
from keras import ops

from keras_spikformer.neurons import neuron_state, surrogates
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
    state leaks between batches, except inside a `CarriedMembranes` scope
    (streaming, `model.stream()`), where it starts from the membrane the
    previous call ended with. Membrane maths runs in float32 under mixed
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
        # `v - 0.0` is `v` exactly: skipped for a zero reset (one op less).
        leak = v - self.v_reset if self.v_reset else v
        if self.decay_input:
            return v + (x - leak) / self.tau
        return v - leak / self.tau + x

    def _first_charge(self, x):
        """`_charge` from the resting membrane (`v = v_reset`), where `v - v_reset`
        is exactly 0: the same value (up to the sign of a zero) in fewer ops."""
        h = x / self.tau if self.decay_input else x
        return h + self.v_reset if self.v_reset else h

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
        x = ops.cast(inputs, "float32")
        scope = neuron_state.active()
        spikes = (
            self._fire(x) if scope is None else scope.carry(self, x, self._integrate)
        )
        outputs = ops.cast(spikes, self.compute_dtype)
        notify(self, outputs)
        return outputs

    def _integrate(self, x, v=None):
        """The forward time loop of `_fire` from membrane `v` (`None`: at rest).

        Inference only (no custom gradient). Returns `(spikes, final membrane)`;
        with `v=None` the spikes are exactly `_fire`'s.
        """
        fired = []
        for x_t in ops.unstack(x, axis=1):
            h = self._first_charge(x_t) if v is None else self._charge(v, x_t)
            f = ops.greater_equal(h, self.v_threshold)
            v = self._reset_fired(h, f)
            fired.append(f)
        return ops.cast(ops.stack(fired, axis=1), x.dtype), v

    def resting_membrane(self, shape):
        """The membrane at rest, `[batch, ...]` of `shape` (float32)."""
        return ops.full(shape, self.v_reset or 0.0, dtype="float32")

    def _fire(self, inputs):
        # One custom gradient for the whole time loop (backpropagation through
        # time in closed form, as SpikingJelly's CUDA kernels do). Autodiff of
        # the unrolled loop makes XLA recompute the forward recurrence inside
        # every backward fusion; this keeps H[t] and the spikes and runs one
        # reverse loop instead. Few ops per step: eager torch runs each one.
        if keras.backend.backend() == "torch":
            from keras_spikformer.neurons import lif_torch

            if lif_torch.supports(self):
                # Both loops as fused torch kernels; the same arithmetic.
                return lif_torch.fire(self, inputs)
        decay = 1.0 - 1.0 / self.tau
        input_scale = 1.0 / self.tau if self.decay_input else 1.0
        threshold = self.v_threshold

        @ops.custom_gradient
        def fire(x):
            potentials, fired = [], []
            v = None  # the resting membrane before step 0
            for x_t in ops.unstack(x, axis=1):
                h = self._first_charge(x_t) if v is None else self._charge(v, x_t)
                # `h >= threshold` is `h - threshold >= 0` for every float.
                f = ops.greater_equal(h, threshold)
                v = self._reset_fired(h, f)
                potentials.append(h)
                fired.append(f)
            spikes = ops.cast(ops.stack(fired, axis=1), x.dtype)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                upstream = ops.unstack(upstream, axis=1)
                grad_v = None  # dL/dV[t], flowing back from step t + 1
                grads = []
                for t in reversed(range(len(potentials))):
                    h, f = potentials[t], fired[t]
                    surrogate_grad = self.surrogate.derivative(h - threshold)
                    grad_h = upstream[t] * surrogate_grad
                    if grad_v is not None:
                        grad_h = grad_h + self._through_reset(
                            grad_v, h, f, surrogate_grad
                        )
                    grads.append(grad_h * input_scale if input_scale != 1.0 else grad_h)
                    grad_v = grad_h * decay
                return ops.stack(grads[::-1], axis=1)

            return spikes, grad

        return fire(inputs)

    def _reset_fired(self, h, fired):
        """`_reset` given the boolean spikes: hard reset as one `where` (equal to
        `h * (1 - s) + v_reset * s` up to the sign of a zero)."""
        if self.v_reset is None:
            return h - self.v_threshold * ops.cast(fired, h.dtype)
        return ops.where(fired, self.v_reset, h)

    def _through_reset(self, grad_v, h, fired, surrogate_grad):
        """`grad_v * dV[t]/dH[t]` given the boolean spikes."""
        if self.detach_reset:
            if self.v_reset is None:
                return grad_v
            return ops.where(fired, 0.0, grad_v)
        s = ops.cast(fired, h.dtype)
        return grad_v * self._reset_gradient(h, s, surrogate_grad)

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
