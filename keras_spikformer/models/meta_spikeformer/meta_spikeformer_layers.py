"""Meta-SpikeFormer convolutional layers: separable conv, conv block, downsampling.

RepConv and its BN-and-pad live in `meta_spikeformer_repconv.py`.
"""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.depthwise_conv import DepthwiseConv2D
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT
from keras_spikformer.layers.time_folding import fold_time, folded_shape, unfold_time
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_repconv import (
    built,
    fresh,
)
from keras_spikformer.neurons import LIFNeuron


def neuron(name, neuron_config, dtype, **overrides):
    """A `LIFNeuron` with the family's shared options (and per-neuron overrides)."""
    return LIFNeuron(**{**neuron_config, **overrides}, name=name, dtype=dtype)


def time_shape(input_shape, folded_output):
    """`[batch, time, ...]` shape of a folded output shape."""
    return tuple(input_shape[:2]) + tuple(folded_output[1:])


class _SpikingBlockBase(keras.layers.Layer):
    """Stores the neuron options and the kernel initializer of a block."""

    def __init__(self, neuron_config=None, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.neuron_config = dict(neuron_config or {})
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or TORCH_DEFAULT_INIT
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

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
class MetaSpikeFormerSepConv(_SpikingBlockBase):
    """Inverted separable conv: LIF -> 1x1 (2C) -> BN -> LIF -> depthwise 7x7 -> 1x1 (C) -> BN.

    Args:
        neuron_config: dict of `LIFNeuron` arguments.
        kernel_initializer: initializer of the convolutions.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]`; output the same.

    Example:
    >>> y = MetaSpikeFormerSepConv()(keras.random.normal((2, 4, 16, 16, 32)))
    """

    expansion = 2
    kernel_size = 7

    def build(self, input_shape):
        channels, dtype = input_shape[-1], self.dtype_policy
        init = self.kernel_initializer
        hidden = self.expansion * channels
        self.lif1 = neuron("lif1", self.neuron_config, dtype)
        self.pwconv1 = keras.layers.Dense(
            hidden, use_bias=False, kernel_initializer=fresh(init), name="pwconv1",
            dtype=dtype,
        )  # fmt: skip
        self.bn1 = BatchNorm(name="bn1", dtype=dtype)
        self.lif2 = neuron("lif2", self.neuron_config, dtype)
        self.dwconv = DepthwiseConv2D(
            self.kernel_size, padding="same", use_bias=False,
            depthwise_initializer=fresh(init), name="dwconv", dtype=dtype,
        )  # fmt: skip
        self.pwconv2 = keras.layers.Dense(
            channels, use_bias=False, kernel_initializer=fresh(init), name="pwconv2",
            dtype=dtype,
        )  # fmt: skip
        self.bn2 = BatchNorm(name="bn2", dtype=dtype)
        folded = folded_shape(input_shape)
        self.lif1.build(input_shape)
        shape = built(self.pwconv1, folded)
        self.bn1.build(shape)
        self.lif2.build(time_shape(input_shape, shape))
        shape = built(self.pwconv2, built(self.dwconv, shape))
        self.bn2.build(shape)

    def call(self, inputs, training=None):
        steps = inputs.shape[1]
        x = self.bn1(self.pwconv1(fold_time(self.lif1(inputs))), training=training)
        x = fold_time(self.lif2(unfold_time(x, steps)))
        x = self.bn2(self.pwconv2(self.dwconv(x)), training=training)
        return unfold_time(x, steps)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerConvBlock(RematMixin, _SpikingBlockBase):
    """Conv-based spiking block with membrane shortcuts.

    ```
    x = x + SepConv(x)
    x = x + BN(Conv3x3(C) (LIF(BN(Conv3x3(4C) (LIF(x))))))
    ```

    Args:
        neuron_config: dict of `LIFNeuron` arguments.
        kernel_initializer: initializer of the convolutions.
        remat: bool, in training recompute the whole layer in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]`; output the same.

    Example:
    >>> y = MetaSpikeFormerConvBlock()(keras.random.normal((2, 4, 16, 16, 32)))
    """

    expansion = 4

    def build(self, input_shape):
        channels, dtype = input_shape[-1], self.dtype_policy
        init = self.kernel_initializer
        self.sep_conv = MetaSpikeFormerSepConv(
            self.neuron_config, init, name="sep_conv", dtype=dtype
        )
        self.sep_conv.build(input_shape)
        self.lif1 = neuron("lif1", self.neuron_config, dtype)
        self.conv1 = keras.layers.Conv2D(
            self.expansion * channels, 3, padding="same", use_bias=False,
            kernel_initializer=fresh(init), name="conv1", dtype=dtype,
        )  # fmt: skip
        self.bn1 = BatchNorm(name="bn1", dtype=dtype)
        self.lif2 = neuron("lif2", self.neuron_config, dtype)
        self.conv2 = keras.layers.Conv2D(
            channels, 3, padding="same", use_bias=False,
            kernel_initializer=fresh(init), name="conv2", dtype=dtype,
        )  # fmt: skip
        self.bn2 = BatchNorm(name="bn2", dtype=dtype)
        self.lif1.build(input_shape)
        shape = built(self.conv1, folded_shape(input_shape))
        self.bn1.build(shape)
        self.lif2.build(time_shape(input_shape, shape))
        self.bn2.build(built(self.conv2, shape))

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        steps = inputs.shape[1]
        x = inputs + self.sep_conv(inputs, training=training)
        y = self.bn1(self.conv1(fold_time(self.lif1(x))), training=training)
        y = fold_time(self.lif2(unfold_time(y, steps)))
        y = self.bn2(self.conv2(y), training=training)
        return x + unfold_time(y, steps)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerDownsampling(RematMixin, _SpikingBlockBase):
    """Strided downsampling: [LIF ->] symmetric zero padding -> Conv (bias) -> BN.

    PyTorch pads strided convolutions symmetrically; Keras's `"same"` does not
    (it pads bottom/right only for even sizes), hence explicit padding.

    Args:
        filters: int, output channels.
        kernel_size: int, square kernel. Defaults to `3`.
        strides: int. Defaults to `2`.
        padding: int, zero padding on every side. Defaults to `1`.
        first_layer: bool, `True` for the stem: no LIF before the conv (it sees
            pixels) and the input is a static image `[batch, H, W, C]`, repeated
            over `num_timesteps` after the batch norm. Defaults to `False`.
        num_timesteps: int, time steps (only with `first_layer`).
        neuron_config, kernel_initializer: see `MetaSpikeFormerConvBlock`.
        remat: bool, in training recompute the whole layer in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, H, W, C]` (`[batch, H, W, C]` with
    `first_layer`); output `[batch, time, H', W', filters]`.

    Example:
    >>> y = MetaSpikeFormerDownsampling(64)(keras.random.normal((2, 4, 16, 16, 32)))
    """

    def __init__(
        self, filters, kernel_size=3, strides=2, padding=1, first_layer=False,
        num_timesteps=None, **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        if first_layer and not num_timesteps:
            raise ValueError("`first_layer=True` needs `num_timesteps` (an int >= 1).")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = int(padding)
        self.first_layer = bool(first_layer)
        self.num_timesteps = int(num_timesteps) if num_timesteps else None

    def build(self, input_shape):
        dtype = self.dtype_policy
        folded = tuple(input_shape) if self.first_layer else folded_shape(input_shape)
        if not self.first_layer:
            self.lif = neuron("lif", self.neuron_config, dtype)
            self.lif.build(input_shape)
        self.conv = keras.layers.Conv2D(
            self.filters, self.kernel_size, strides=self.strides, padding="valid",
            kernel_initializer=fresh(self.kernel_initializer), name="conv", dtype=dtype,
        )  # fmt: skip
        self.bn = BatchNorm(name="bn", dtype=dtype)
        self.bn.build(built(self.conv, self._padded(folded)))

    def _padded(self, shape):
        p = 2 * self.padding
        return (
            (shape[0],)
            + tuple(None if d is None else d + p for d in shape[1:3])
            + (shape[3],)
        )

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        p = self.padding
        pad = ((0, 0), (p, p), (p, p), (0, 0))
        if self.first_layer:
            # Static images: conv and BN once; BN statistics over T identical
            # copies equal those over the batch.
            x = self.bn(self.conv(ops.pad(inputs, pad)), training=training)
            return ops.repeat(ops.expand_dims(x, 1), self.num_timesteps, axis=1)
        x = fold_time(self.lif(inputs))
        x = self.bn(self.conv(ops.pad(x, pad)), training=training)
        return unfold_time(x, inputs.shape[1])

    def compute_output_shape(self, input_shape):
        if self.first_layer:
            batch, steps, spatial = input_shape[0], self.num_timesteps, input_shape[1:3]
        else:
            batch, steps, spatial = input_shape[0], input_shape[1], input_shape[2:4]
        k, s, p = self.kernel_size, self.strides, 2 * self.padding
        out = tuple(None if d is None else (d + p - k) // s + 1 for d in spatial)
        return (batch, steps) + out + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "first_layer": self.first_layer,
                "num_timesteps": self.num_timesteps,
            }
        )
        return config
