"""E-SpikeFormer convolutional layers: downsampling, SepConv with spikes, conv block, MLP.

Every layer takes `[batch, H, W, C]` (Base, no time axis) or
`[batch, time, H, W, C]` (Large); a time axis is folded into the batch for
the convolutions and batch norms (statistics over time and batch).
"""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.depthwise_conv import DepthwiseConv2D
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.layers.time_folding import fold_time, unfold_time
from keras_spikformer.models.e_spikeformer.e_spikeformer_init import HostFanInUniform
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_repconv import fresh
from keras_spikformer.neurons.integer_spike import IntegerSpikeNeuron

# E-SpikeFormer Base: round half to even, gradient on [0, D] (ends inclusive).
BASE_NEURON = {
    "spike_levels": 4,
    "rounding": "half_even",
    "gradient_bounds": "inclusive",
}
# E-SpikeFormer Large: round half up, gradient on (0, D) (ends exclusive).
LARGE_NEURON = {
    "spike_levels": 4,
    "rounding": "half_up",
    "gradient_bounds": "exclusive",
}


def spiking(name, neuron_config, dtype, **overrides):
    """An `IntegerSpikeNeuron` with the family's options (and overrides)."""
    return IntegerSpikeNeuron(**{**neuron_config, **overrides}, name=name, dtype=dtype)


def spatial(fn, x):
    """Applies a `[batch, H, W, C]` function to `x`, folding a time axis if any."""
    if len(x.shape) == 5:
        return unfold_time(fn(fold_time(x)), x.shape[1])
    return fn(x)


def flat4(shape):
    """The `[batch, H, W, C]` shape a conv sees (time folded into the batch)."""
    shape = tuple(shape)
    if len(shape) == 5:
        batch = None if shape[0] is None or shape[1] is None else shape[0] * shape[1]
        return (batch,) + shape[2:]
    return shape


def with_channels(shape, channels):
    """`shape` with its last axis replaced by `channels`."""
    return tuple(shape)[:-1] + (int(channels),)


def build_all(*pairs):
    """Builds each `(layer, input_shape)` pair (variables exist before any call)."""
    for layer, shape in pairs:
        layer.build(tuple(shape))


def conv2d(filters, kernel_size, name, init, dtype, strides=1, use_bias=False,
           padding="same"):  # fmt: skip
    """A `Conv2D` with a fresh copy of `init` for its kernel."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
        kernel_initializer=fresh(init), name=name, dtype=dtype,
    )  # fmt: skip


def dense(units, name, init, dtype, use_bias=False):
    """A `Dense` (a 1x1 conv / Conv1d on channels-last tokens)."""
    return keras.layers.Dense(
        units, use_bias=use_bias, kernel_initializer=fresh(init), name=name,
        dtype=dtype,
    )  # fmt: skip


class ESpikeFormerLayer(keras.layers.Layer):
    """Stores the neuron options and the kernel initializer of a block."""

    def __init__(self, neuron_config=None, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.neuron_config = dict(neuron_config or BASE_NEURON)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or HostFanInUniform()
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def sn(self, name, **overrides):
        return spiking(name, self.neuron_config, self.dtype_policy, **overrides)

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
class ESpikeFormerDownsampling(RematMixin, ESpikeFormerLayer):
    """[SN ->] symmetric zero padding -> Conv (with bias) -> BN.

    Args:
        filters: int, output channels.
        kernel_size: int. Defaults to `3`.
        strides: int. Defaults to `2`.
        padding: int, zero padding on every side. Defaults to `1`.
        first_layer: bool, no neuron before the conv (it sees pixels).
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        remat: bool, in training recompute the whole layer in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Example:
    >>> y = ESpikeFormerDownsampling(32)(keras.random.normal((2, 16, 16, 16)))
    """

    def __init__(self, filters, kernel_size=3, strides=2, padding=1,
                 first_layer=False, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.padding = int(padding)
        self.first_layer = bool(first_layer)

    def build(self, input_shape):
        dtype, init = self.dtype_policy, self.kernel_initializer
        self.spike = None if self.first_layer else self.sn("spike")
        self.conv = conv2d(self.filters, self.kernel_size, "conv", init, dtype,
                           strides=self.strides, use_bias=True, padding="valid")  # fmt: skip
        self.bn = BatchNorm(name="bn", dtype=dtype)
        folded = flat4(input_shape)
        p = 2 * self.padding
        padded = (
            (folded[0],)
            + tuple(None if d is None else d + p for d in folded[1:3])
            + (folded[3],)
        )
        if self.spike is not None:
            self.spike.build(input_shape)
        self.conv.build(padded)
        self.bn.build(self.conv.compute_output_shape(padded))

    def compute_output_shape(self, input_shape):
        k, s, p = self.kernel_size, self.strides, 2 * self.padding
        shape = tuple(input_shape)
        out = tuple(None if d is None else (d + p - k) // s + 1 for d in shape[-3:-1])
        return shape[:-3] + out + (self.filters,)

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        p = self.padding
        x = inputs if self.spike is None else self.spike(inputs)

        def fn(t):
            t = ops.pad(t, ((0, 0), (p, p), (p, p), (0, 0)))
            return self.bn(self.conv(t), training=training)

        return spatial(fn, x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "first_layer": self.first_layer,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerSepConv(ESpikeFormerLayer):
    """Separable conv with a neuron before every conv and a BN after each.

    ```
    a = BN1(PW1_{C->2C}(SN(x)));  b = BN2(DW_kxk(SN(a)));  y = BN3(PW2_{2C->C}(SN(b)))
    ```

    Args:
        kernel_size: int, depthwise kernel (7 in stages 1-2, 3 in 3-4).
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        **kwargs: standard layer arguments.

    Example:
    >>> y = ESpikeFormerSepConv(7)(keras.random.normal((2, 16, 16, 8)))
    """

    expansion = 2

    def __init__(self, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        hidden = self.expansion * channels
        self.spike1, self.spike2, self.spike3 = (
            self.sn(f"spike{i}") for i in (1, 2, 3)
        )
        self.pwconv1 = dense(hidden, "pwconv1", init, dtype)
        self.bn1 = BatchNorm(name="bn1", dtype=dtype)
        self.dwconv = DepthwiseConv2D(
            self.kernel_size, padding="same", use_bias=False,
            depthwise_initializer=fresh(init), name="dwconv", dtype=dtype,
        )  # fmt: skip
        self.bn2 = BatchNorm(name="bn2", dtype=dtype)
        self.pwconv2 = dense(channels, "pwconv2", init, dtype)
        self.bn3 = BatchNorm(name="bn3", dtype=dtype)
        wide = with_channels(input_shape, hidden)
        build_all(
            (self.spike1, input_shape), (self.pwconv1, input_shape), (self.bn1, wide),
            (self.spike2, wide), (self.dwconv, flat4(wide)), (self.bn2, flat4(wide)),
            (self.spike3, wide), (self.pwconv2, wide), (self.bn3, input_shape),
        )  # fmt: skip

    def call(self, inputs, training=None):
        x = self.bn1(self.pwconv1(self.spike1(inputs)), training=training)
        x = spatial(
            lambda t: self.bn2(self.dwconv(t), training=training), self.spike2(x)
        )
        return self.bn3(self.pwconv2(self.spike3(x)), training=training)

    def get_config(self):
        config = super().get_config()
        config["kernel_size"] = self.kernel_size
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerConvBlock(RematMixin, ESpikeFormerLayer):
    """Conv block of stages 1-2, residuals on the real-valued stream.

    ```
    x = x + SepConv_7(x)                                  # Base only
    x = x + BN(Conv3x3_{4C->C}(SN(BN(Conv3x3_{C->4C}(SN(x))))))
    ```

    Args:
        sep_conv: bool, add the SepConv branch (Base). Defaults to `True`.
        use_bias: bool, biases on the 3x3 convs (Large). Defaults to `False`.
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        remat: bool, in training recompute the whole layer in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Example:
    >>> y = ESpikeFormerConvBlock()(keras.random.normal((2, 16, 16, 8)))
    """

    expansion = 4

    def __init__(self, sep_conv=True, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.sep_conv = bool(sep_conv)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        self.sep = None
        if self.sep_conv:
            self.sep = ESpikeFormerSepConv(
                7, neuron_config=self.neuron_config, kernel_initializer=init,
                name="sep_conv", dtype=dtype,
            )  # fmt: skip
        self.spike1, self.spike2 = self.sn("spike1"), self.sn("spike2")
        bias = self.use_bias
        self.conv1 = conv2d(
            self.expansion * channels, 3, "conv1", init, dtype, use_bias=bias
        )
        self.bn1 = BatchNorm(name="bn1", dtype=dtype)
        self.conv2 = conv2d(channels, 3, "conv2", init, dtype, use_bias=bias)
        self.bn2 = BatchNorm(name="bn2", dtype=dtype)
        wide = with_channels(input_shape, self.expansion * channels)
        if self.sep is not None:
            self.sep.build(input_shape)
        build_all(
            (self.spike1, input_shape), (self.conv1, flat4(input_shape)),
            (self.bn1, flat4(wide)), (self.spike2, wide), (self.conv2, flat4(wide)),
            (self.bn2, flat4(input_shape)),
        )  # fmt: skip

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        x = inputs
        if self.sep is not None:
            x = x + self.sep(x, training=training)
        y = spatial(
            lambda t: self.bn1(self.conv1(t), training=training), self.spike1(x)
        )
        y = spatial(
            lambda t: self.bn2(self.conv2(t), training=training), self.spike2(y)
        )
        return x + y

    def get_config(self):
        config = super().get_config()
        config.update({"sep_conv": self.sep_conv, "use_bias": self.use_bias})
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerMLP(ESpikeFormerLayer):
    """Spiking MLP on channels: `BN(FC2(SN(BN(FC1(SN(x))))))`, FCs with bias.

    Args:
        mlp_ratio: float, hidden width over input width. Defaults to `4.0`.
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        **kwargs: standard layer arguments.

    Returns the branch (before the residual add).

    Example:
    >>> y = ESpikeFormerMLP()(keras.random.normal((2, 4, 4, 32)))
    """

    def __init__(self, mlp_ratio=4.0, **kwargs):
        super().__init__(**kwargs)
        self.mlp_ratio = float(mlp_ratio)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        self.fc1_spike, self.fc2_spike = self.sn("fc1_spike"), self.sn("fc2_spike")
        self.fc1 = dense(int(channels * self.mlp_ratio), "fc1", init, dtype, True)
        self.fc1_bn = BatchNorm(name="fc1_bn", dtype=dtype)
        self.fc2 = dense(channels, "fc2", init, dtype, True)
        self.fc2_bn = BatchNorm(name="fc2_bn", dtype=dtype)
        wide = with_channels(input_shape, int(channels * self.mlp_ratio))
        build_all(
            (self.fc1_spike, input_shape), (self.fc1, input_shape), (self.fc1_bn, wide),
            (self.fc2_spike, wide), (self.fc2, wide), (self.fc2_bn, input_shape),
        )  # fmt: skip

    def call(self, inputs, training=None):
        x = self.fc1_bn(self.fc1(self.fc1_spike(inputs)), training=training)
        return self.fc2_bn(self.fc2(self.fc2_spike(x)), training=training)

    def get_config(self):
        config = super().get_config()
        config["mlp_ratio"] = self.mlp_ratio
        return config
