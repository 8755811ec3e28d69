"""Synapse -> batch norm -> LIF units over `[batch, time, ...]`."""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.dense import Dense
from keras_spikformer.layers.time_folding import fold_time, folded_shape, unfold_time
from keras_spikformer.neurons import LIFNeuron

# PyTorch's default conv/linear initialisation (kaiming_uniform with a=sqrt(5)).
TORCH_DEFAULT_INIT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}
# timm's `trunc_normal_(std=.02)` for linear layers.
TRUNC_NORMAL_INIT = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}


def batch_norm(name, dtype):
    """Batch norm with PyTorch's defaults (momentum 0.1, epsilon 1e-5)."""
    return BatchNorm(name=name, dtype=dtype)


class SpikingUnit(keras.layers.Layer):
    """Base of `SpikingDense` and `SpikingConv2D`: synapse -> BN -> LIF.

    The synapse and the batch norm run with time folded into batch, so batch
    statistics in training span batch x time (x tokens or pixels); the neuron
    runs over time. Called with `num_timesteps=T` on a static `[batch, ...]`
    input, the synapse and batch norm run once and the neuron sees the same
    input at each of the T steps.
    """

    def __init__(self, neuron_config=None, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.neuron_config = dict(neuron_config or {})
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or self.default_initializer
        )

    def make_synapse(self):
        raise NotImplementedError

    def build(self, input_shape):
        folded = folded_shape(input_shape)
        self.synapse = self.make_synapse()
        self.synapse.build(folded)
        out_folded = self.synapse.compute_output_shape(folded)
        self.bn = batch_norm("bn", self.dtype_policy)
        self.bn.build(out_folded)
        self.lif = LIFNeuron(**self.neuron_config, name="lif", dtype=self.dtype_policy)
        self.lif.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None, num_timesteps=None):
        if num_timesteps is not None:
            # Static input `[batch, ...]`, the same at every step (direct
            # encoding): the synapse and batch norm run once, not T times;
            # batch statistics over T identical copies equal those over the batch.
            x = self.bn(self.synapse(inputs), training=training)
            return self.lif(ops.repeat(ops.expand_dims(x, 1), num_timesteps, axis=1))
        x = self.synapse(fold_time(inputs))
        x = self.bn(x, training=training)
        return self.lif(unfold_time(x, inputs.shape[1]))

    def compute_output_shape(self, input_shape):
        out = self.synapse.compute_output_shape(folded_shape(input_shape))
        return tuple(input_shape[:2]) + tuple(out[1:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "neuron_config": self.neuron_config,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikingDense(SpikingUnit):
    """Dense -> BatchNorm -> LIF, applied at every time step (and token).

    Args:
        units: int, output features.
        use_bias: bool, whether the dense layer has a bias. Defaults to `True`.
        neuron_config: dict of `LIFNeuron` arguments. Defaults to Spikformer's.
        kernel_initializer: initializer of the dense kernel. Defaults to
            truncated normal with std 0.02 (timm's).
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, ..., features]`; output `[batch, time, ..., units]`.

    Example:
    >>> q = SpikingDense(384, use_bias=False)
    >>> spikes = q(keras.random.normal((2, 4, 64, 384)))
    """

    default_initializer = TRUNC_NORMAL_INIT

    def __init__(self, units, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)

    def make_synapse(self):
        return Dense(
            self.units,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            name="dense",
            dtype=self.dtype_policy,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikingConv2D(SpikingUnit):
    """Conv2D (3x3, stride 1, pad 1, no bias) -> BatchNorm -> LIF at every time step.

    Args:
        filters: int, output channels.
        kernel_size: int, square kernel size (odd). Defaults to `3`.
        neuron_config: dict of `LIFNeuron` arguments. Defaults to Spikformer's.
        kernel_initializer: initializer of the kernel. Defaults to PyTorch's
            conv default (uniform, bound `1/sqrt(fan_in)`).
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]`;
    output `[batch, time, height, width, filters]`.

    Example:
    >>> stem = SpikingConv2D(48)
    >>> spikes = stem(keras.random.normal((2, 4, 32, 32, 3)))
    """

    default_initializer = TORCH_DEFAULT_INIT

    def __init__(self, filters, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        if int(kernel_size) % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd; got {kernel_size}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)

    def make_synapse(self):
        return keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="conv",
            dtype=self.dtype_policy,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size})
        return config
