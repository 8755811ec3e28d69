"""Integer-valued spike neuron of E-SpikeFormer (Spike-driven Transformer V3).

Training and evaluation use the integer form `round(clip(x, 0, D)) / norm`;
`binary_expansion` gives the spike-driven view (D binary virtual steps per
integer) that firing rates and synaptic-operation counts are taken from.
"""

import keras
from keras import ops

from keras_spikformer.neurons.recording import notify

ROUNDINGS = ("half_even", "half_up")
GRADIENT_BOUNDS = ("inclusive", "exclusive")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")
    return value


def integer_spike(x, spike_levels=4, norm=None, rounding="half_even",
                  gradient_bounds="inclusive"):  # fmt: skip
    """`round(clip(x, 0, D)) / norm` with a straight-through gradient.

    Args:
        x: tensor, the neuron input.
        spike_levels: int `D`, the largest integer level.
        norm: float, divisor of the integer level; `None` means `D`.
        rounding: `"half_even"` (E-SpikeFormer Base: 0.5 -> 0, 2.5 -> 2) or
            `"half_up"` (Large: 0.5 -> 1, 2.5 -> 3).
        gradient_bounds: `"inclusive"` passes the gradient where
            `0 <= x <= D` (Base), `"exclusive"` where `0 < x < D` (Large).

    Returns:
        Tensor of `x`'s shape and dtype, values in `{0, 1, ..., D} / norm`;
        its gradient is `upstream / norm` inside the bounds, else 0.

    Example:
    >>> integer_spike(keras.ops.array([0.5, 1.5, 2.5, 9.0]))  # [0, .5, .5, 1]
    """
    _check_choice("rounding", rounding, ROUNDINGS)
    _check_choice("gradient_bounds", gradient_bounds, GRADIENT_BOUNDS)
    levels = float(spike_levels)
    norm = levels if norm is None else float(norm)
    clipped = ops.clip(x, 0.0, levels)
    if rounding == "half_even":
        level = ops.round(clipped)
    else:
        level = ops.floor(clipped + 0.5)
    if gradient_bounds == "inclusive":
        inside = ops.logical_and(x >= 0.0, x <= levels)
    else:
        inside = ops.logical_and(x > 0.0, x < levels)
    mask = ops.stop_gradient(ops.cast(inside, x.dtype))
    # Forward: the level exactly (x - stop_gradient(x) is 0); backward: mask.
    straight_through = ops.stop_gradient(level) + (x - ops.stop_gradient(x)) * mask
    return straight_through / norm if norm != 1.0 else straight_through


@keras.saving.register_keras_serializable(package="keras_spikformer")
class IntegerSpikeNeuron(keras.layers.Layer):
    """Stateless multi-level spike neuron ("spike firing approximation").

    ```
    y = round(clip(x, 0, D)) / norm          # D = spike_levels
    dy/dx = 1 / norm inside [0, D], else 0   # straight through
    ```

    No membrane, leak, reset or time loop: the integer `n = y * norm` stands
    for `n` binary spikes over `D` virtual time steps (`binary_expansion`).
    E-SpikeFormer Base uses `rounding="half_even"`, inclusive bounds, D = 4;
    the Large models `rounding="half_up"`, exclusive bounds, D = 4 or 8. The
    pre-head neurons have `norm=1` (integer outputs).

    Args:
        spike_levels: int `D >= 1`. Defaults to `4`.
        norm: float or `None` (= `D`), divisor of the output.
        rounding: `"half_even"` or `"half_up"`. Defaults to `"half_even"`.
        gradient_bounds: `"inclusive"` or `"exclusive"`. Defaults to
            `"inclusive"`.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Input shape: any; output the same.

    Example:
    >>> sn = IntegerSpikeNeuron(spike_levels=4, rounding="half_up",
    ...     gradient_bounds="exclusive")
    >>> y = sn(keras.random.normal((2, 16, 64)))  # values in {0, .25, ..., 1}

    References:
        Yao et al., "Scaling Spike-driven Transformer with Efficient Spike
        Firing Approximation Training", IEEE TPAMI 2025 (arXiv 2411.16061).
    """

    def __init__(self, spike_levels=4, norm=None, rounding="half_even",
                 gradient_bounds="inclusive", **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if isinstance(spike_levels, bool) or int(spike_levels) != spike_levels:
            raise TypeError(f"`spike_levels` must be an integer; got {spike_levels!r}.")
        if int(spike_levels) < 1:
            raise ValueError(f"`spike_levels` must be >= 1; got {spike_levels}.")
        if norm is not None and not float(norm) > 0:
            raise ValueError(f"`norm` must be positive or None; got {norm}.")
        self.spike_levels = int(spike_levels)
        self.norm = None if norm is None else float(norm)
        self.rounding = _check_choice("rounding", rounding, ROUNDINGS)
        self.gradient_bounds = _check_choice(
            "gradient_bounds", gradient_bounds, GRADIENT_BOUNDS
        )

    @property
    def output_scale(self):
        """The divisor of the integer level (`norm`, or `D` when `None`)."""
        return float(self.spike_levels) if self.norm is None else self.norm

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        y = integer_spike(
            x, self.spike_levels, self.output_scale, self.rounding, self.gradient_bounds
        )
        outputs = ops.cast(y, self.compute_dtype)
        notify(self, outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "spike_levels": self.spike_levels,
                "norm": self.norm,
                "rounding": self.rounding,
                "gradient_bounds": self.gradient_bounds,
            }
        )
        return config


def binary_expansion(levels, spike_levels, time_axis=None):
    """Integer spike levels as `D` front-loaded binary spikes ("T x D" view).

    Integer `n` becomes `D` binary virtual steps; step `k` (0..D-1) fires iff
    `k < n`, so the steps sum to `n`. With a time axis of length `T` the
    result has `T * D` steps on that axis, index `t * D + k`; without one, a
    new leading axis of length `D` is added.

    Args:
        levels: tensor of integer levels `0..D` (e.g. a neuron output times
            its `output_scale`).
        spike_levels: int `D`.
        time_axis: int or `None`, the real time axis of `levels`.

    Returns:
        Tensor of 0/1 spikes in `levels`' dtype.

    Example:
    >>> binary_expansion(keras.ops.array([[3.0, 0.0]]), 4, time_axis=0)
    ... # [[1, 0], [1, 0], [1, 0], [0, 0]]
    """
    levels = ops.convert_to_tensor(levels)
    d = int(spike_levels)
    steps = ops.stack(
        [ops.cast(levels > float(k), levels.dtype) for k in range(d)], axis=0
    )  # [D, ...]
    if time_axis is None:
        return steps
    axis = time_axis % len(levels.shape)
    steps = ops.moveaxis(steps, 0, axis + 1)  # [..., T, D, ...]
    shape = tuple(ops.shape(levels))
    return ops.reshape(steps, shape[:axis] + (shape[axis] * d,) + shape[axis + 1 :])
