"""The LIF time loop as fused torch kernels (the torch backend's fast path).

On the torch backend `LIFNeuron` runs its whole time loop through this
module: the forward loop and the backward (BPTT) loop are each one function
of torch ops that `torch.compile` (Inductor) turns into a single C++ loop
over the neurons, with the T time steps unrolled inside it. Eager torch runs
five to eight full-size element-wise operations per time step instead, each
reading and writing arrays that do not stay in cache (`benchmarks/README.md`,
"torch backend").

The forward arithmetic is `LIFNeuron`'s, operation for operation, so spikes
are bit-identical to the Keras-ops loop (the exactness tests run through this
path on torch). When Inductor cannot compile (no C++ compiler, an unsupported
platform), or `KERAS_SPIKFORMER_TORCH_COMPILE=0` is set, the same functions
run eagerly.
"""

import math
import os
import warnings

import torch

from keras_spikformer.neurons import surrogates

COMPILE_VARIABLE = "KERAS_SPIKFORMER_TORCH_COMPILE"


def _sigmoid_derivative(alpha):
    def derivative(x):
        sg = torch.sigmoid(alpha * x)
        return alpha * sg * (1.0 - sg)

    return derivative


def _atan_derivative(alpha):
    def derivative(x):
        return alpha / 2.0 / (1.0 + torch.square(math.pi / 2.0 * alpha * x))

    return derivative


# By surrogate class: its name here and the torch form of its derivative.
_SURROGATES = {
    surrogates.SigmoidSurrogate: ("sigmoid", _sigmoid_derivative),
    surrogates.ATanSurrogate: ("atan", _atan_derivative),
}
_DERIVATIVES = dict(_SURROGATES.values())


def supports(neuron):
    """Whether `neuron`'s surrogate has a torch derivative here (else: Keras ops)."""
    return type(neuron.surrogate) in _SURROGATES


def _charge(v, x_t, tau, v_reset, decay_input):
    """`LIFNeuron._charge` / `_first_charge` (`v=None`) in the same operations."""
    if v is None:
        h = x_t / tau if decay_input else x_t
        return h + v_reset if v_reset else h
    leak = v - v_reset if v_reset else v
    if decay_input:
        return v + (x_t - leak) / tau
    return v - leak / tau + x_t


def _forward(x, tau, threshold, v_reset, decay_input, keep_potentials):
    """Spikes (and the potentials H[t]) of `x` `[batch, time, neurons]`."""
    spikes, potentials = [], []
    v = None
    for t in range(x.shape[1]):
        h = _charge(v, x[:, t], tau, v_reset, decay_input)
        fired = h >= threshold
        s = fired.to(x.dtype)
        # `LIFNeuron._reset_fired`: soft reset subtracts, hard reset is a `where`.
        v = h - threshold * s if v_reset is None else torch.where(fired, v_reset, h)
        spikes.append(s)
        potentials.append(h)
    spikes = torch.stack(spikes, dim=1)
    if keep_potentials:
        return spikes, torch.stack(potentials, dim=1)
    return spikes


def _infer(x, tau, threshold, v_reset, decay_input):
    return _forward(x, tau, threshold, v_reset, decay_input, False)


def _train(x, tau, threshold, v_reset, decay_input):
    return _forward(x, tau, threshold, v_reset, decay_input, True)


def _backward(upstream, potentials, config):
    """dL/dX of the time loop, given dL/dS and H (`LIFNeuron._fire`'s gradient)."""
    tau, threshold, v_reset, decay_input, detach_reset, surrogate, alpha = config
    derivative = _DERIVATIVES[surrogate](alpha)
    decay = 1.0 - 1.0 / tau
    input_scale = 1.0 / tau if decay_input else 1.0
    grads = [None] * upstream.shape[1]
    grad_v = None
    for t in reversed(range(upstream.shape[1])):
        h = potentials[:, t]
        surrogate_grad = derivative(h - threshold)
        grad_h = upstream[:, t] * surrogate_grad
        if grad_v is not None:
            if detach_reset:
                through = (
                    grad_v
                    if v_reset is None
                    else torch.where(h >= threshold, 0.0, grad_v)
                )
            elif v_reset is None:
                through = grad_v * (1.0 - threshold * surrogate_grad)
            else:
                keep = (h < threshold).to(h.dtype)
                through = grad_v * (keep + (v_reset - h) * surrogate_grad)
            grad_h = grad_h + through
        grads[t] = grad_h * input_scale if input_scale != 1.0 else grad_h
        grad_v = grad_h * decay
    return torch.stack(grads, dim=1)


class _Kernel:
    """`fn` compiled by Inductor on first use, or eager where it cannot be."""

    def __init__(self, fn):
        self.fn = fn
        self.compiled = None
        self.failed = os.environ.get(COMPILE_VARIABLE, "1") == "0"

    def __call__(self, *args):
        if self.failed or args[0].device.type == "meta":
            return self.fn(*args)
        if self.compiled is None:
            self.compiled = torch.compile(self.fn, dynamic=True)
        try:
            return self.compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure
            self.failed = True
            warnings.warn(
                f"torch.compile could not build the fused LIF kernel ({error!r:.200}); "
                f"LIF neurons run eagerly (slower). Set {COMPILE_VARIABLE}=0 to skip "
                "the attempt.",
                stacklevel=3,
            )
            return self.fn(*args)


_INFER = _Kernel(_infer)
_TRAIN = _Kernel(_train)
_BACKWARD = _Kernel(_backward)


class _LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, config):
        spikes, potentials = _TRAIN(x, *config[:4])
        ctx.save_for_backward(potentials)
        ctx.config = config
        return spikes

    @staticmethod
    def backward(ctx, upstream):
        (potentials,) = ctx.saved_tensors
        return _BACKWARD(upstream.contiguous(), potentials, ctx.config), None


def fire(neuron, inputs):
    """`LIFNeuron._fire` on the torch backend: float32 spikes of `inputs`.

    Args:
        neuron: a `LIFNeuron` whose surrogate `supports` covers.
        inputs: float32 torch tensor `[batch, time, ...]`.

    Returns:
        Float32 tensor of 0/1 spikes, shaped like `inputs`.

    Example:
    >>> spikes = fire(LIFNeuron(), torch.randn(2, 4, 64, 384))
    """
    shape = inputs.shape
    # Three dimensions whatever the layer: one compiled kernel serves all.
    x = inputs.reshape(shape[0], shape[1], -1)
    threshold = neuron.v_threshold
    config = (neuron.tau, threshold, neuron.v_reset, neuron.decay_input)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _INFER(x, *config).reshape(shape)
    surrogate = neuron.surrogate
    name = _SURROGATES[type(surrogate)][0]
    config = config + (neuron.detach_reset, name, float(surrogate.alpha))
    return _LIFFunction.apply(x, config).reshape(shape)
