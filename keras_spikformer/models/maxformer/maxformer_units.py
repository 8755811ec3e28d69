"""Membrane-shortcut units of Max-Former: [LIF] -> conv or dense -> BN -> [max pool]."""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.dense import Dense
from keras_spikformer.layers.depthwise_conv import DepthwiseConv2D
from keras_spikformer.layers.max_pool import max_pool_3x3_s2
from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT, TRUNC_NORMAL_INIT
from keras_spikformer.layers.time_folding import fold_time, folded_shape, unfold_time
from keras_spikformer.neurons import LIFNeuron

SYNAPSES = ("conv", "depthwise", "dense")


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MembraneUnit(keras.layers.Layer):
    """`[LIF] -> synapse -> BatchNorm -> [MaxPool(3, 2, 1)]`, no output neuron.

    The building brick of membrane-shortcut networks: the input (a real-valued
    membrane stream) fires first, the output is a real-valued batch-norm
    output. Strided convolutions pad symmetrically (PyTorch's `padding=k//2`;
    Keras's `"same"` pads bottom/right only at stride 2). The pool pads with
    `-inf` and routes gradients to the first maximum, as PyTorch does.

    Args:
        filters: int, output channels (`"depthwise"`: must equal the input's).
        kernel_size: int, odd (3, 5, 7) or 1. Defaults to `3`.
        strides: int, convolution stride. Defaults to `1`.
        synapse: `"conv"` (Conv2D), `"depthwise"` (DepthwiseConv2D) or
            `"dense"` (per token). Defaults to `"conv"`.
        use_bias: bool, synapse bias. Defaults to `False`.
        fire_input: bool, a LIF (`lif`) on the input. Defaults to `True`.
        pool: bool, max-pool the batch-norm output. Defaults to `False`.
        neuron_config: dict of `LIFNeuron` arguments.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, ..., channels]`, or static `[batch, H, W, C]`
    when called with `num_timesteps` (the result is repeated over time).

    Example:
    >>> unit = MembraneUnit(32, strides=2)
    >>> y = unit(keras.random.normal((2, 4, 16, 16, 8)))  # (2, 4, 8, 8, 32)
    """

    def __init__(
        self, filters, kernel_size=3, strides=1, synapse="conv", use_bias=False,
        fire_input=True, pool=False, neuron_config=None, **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        if synapse not in SYNAPSES:
            raise ValueError(f"`synapse` must be one of {SYNAPSES}; got {synapse!r}.")
        if int(kernel_size) != 1 and int(kernel_size) % 2 == 0:
            raise ValueError(f"`kernel_size` must be 1 or odd; got {kernel_size}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.synapse_type = synapse
        self.use_bias = bool(use_bias)
        self.fire_input = bool(fire_input)
        self.pool = bool(pool)
        self.neuron_config = dict(neuron_config or {})

    def _make_synapse(self):
        policy = self.dtype_policy
        if self.synapse_type == "dense":
            return Dense(
                self.filters, use_bias=self.use_bias,
                kernel_initializer=TORCH_DEFAULT_INIT, name="dense", dtype=policy,
            )  # fmt: skip
        common = {
            "strides": self.strides,
            "padding": "valid" if self.strides > 1 else "same",
            "use_bias": self.use_bias,
            "name": self.synapse_type,
            "dtype": policy,
        }
        if self.synapse_type == "depthwise":
            return DepthwiseConv2D(
                self.kernel_size, depthwise_initializer=TRUNC_NORMAL_INIT, **common
            )
        return keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            kernel_initializer=TRUNC_NORMAL_INIT,
            **common,
        )

    @property
    def _pad(self):
        """Explicit symmetric zero padding of a strided convolution."""
        return (
            self.kernel_size // 2
            if self.synapse_type != "dense" and self.strides > 1
            else 0
        )

    def build(self, input_shape):
        folded = self._folded(input_shape)
        if self.fire_input:
            self.lif = LIFNeuron(
                **self.neuron_config, name="lif", dtype=self.dtype_policy
            )
            self.lif.build(tuple(input_shape))
        self.synapse = self._make_synapse()
        padded = self._padded_shape(folded)
        self.synapse.build(padded)
        self.bn = BatchNorm(name="bn", dtype=self.dtype_policy)
        self.bn.build(self.synapse.compute_output_shape(padded))

    def _is_sequence(self, shape):
        """`[batch, time, ...]` (else a static `[batch, H, W, C]` image)."""
        return len(shape) == 5 or self.synapse_type == "dense"

    def _folded(self, shape):
        return folded_shape(shape) if self._is_sequence(shape) else tuple(shape)

    def _padded_shape(self, shape):
        p = self._pad
        if not p:
            return tuple(shape)
        grow = [None if d is None else d + 2 * p for d in shape[1:3]]
        return (shape[0], *grow, shape[3])

    def transform(self, x, training=None):
        """Synapse, batch norm and pool on a folded `[batch * time, ...]` tensor."""
        p = self._pad
        if p:
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        x = self.bn(self.synapse(x), training=training)
        return max_pool_3x3_s2(x) if self.pool else x

    def fire(self, inputs):
        """The input neuron on `[batch, time, ...]`."""
        return self.lif(inputs)

    def call(self, inputs, training=None, num_timesteps=None):
        if num_timesteps is not None:  # static image, identical at every step
            x = self.transform(inputs, training=training)
            return ops.repeat(ops.expand_dims(x, 1), num_timesteps, axis=1)
        x = self.fire(inputs) if self.fire_input else inputs
        return self.apply_synapse(x, training=training)

    def apply_synapse(self, spikes, training=None):
        """`transform` on `[batch, time, ...]` spikes (time folded and unfolded)."""
        return unfold_time(self.transform(fold_time(spikes), training), spikes.shape[1])

    def compute_output_shape(self, input_shape):
        out = self.synapse.compute_output_shape(
            self._padded_shape(self._folded(input_shape))
        )
        if self.pool:
            out = (out[0], (out[1] + 1) // 2, (out[2] + 1) // 2, out[3])
        if not self._is_sequence(input_shape):
            return (input_shape[0], None) + tuple(out[1:])
        return tuple(input_shape[:2]) + tuple(out[1:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "synapse": self.synapse_type,
                "use_bias": self.use_bias,
                "fire_input": self.fire_input,
                "pool": self.pool,
                "neuron_config": self.neuron_config,
            }
        )
        return config
