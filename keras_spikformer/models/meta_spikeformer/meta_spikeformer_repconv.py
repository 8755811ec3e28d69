"""Meta-SpikeFormer's re-parameterisable convolution: BN-and-pad and RepConv."""

import keras
import numpy as np
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.depthwise_conv import DepthwiseConv2D
from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT


def fresh(initializer):
    """A new instance of `initializer` for one variable.

    An unseeded Keras initializer instance draws its seed once, when it is
    created, so calling one instance for several variables of the same shape
    gives them identical values (e.g. every q/k/v/proj RepConv of a block).
    A copy from its config draws a new seed (reproducible under
    `keras.utils.set_random_seed`); a seeded initializer stays seeded.
    """
    return initializer.__class__.from_config(initializer.get_config())


def built(layer, input_shape):
    """Builds `layer` for `input_shape` and returns its output shape."""
    layer.build(input_shape)
    return layer.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerBNAndPad(keras.layers.Layer):
    """Batch norm, then a 1-pixel border equal to the batch norm of a zero input.

    The border value per channel is `beta - moving_mean * gamma /
    sqrt(moving_variance + epsilon)` with `gamma` and `beta` held constant
    (no gradient), as in the reference's `BNAndPadLayer` (from RepVGG). In
    training the reference reads its running statistics after this batch's
    update (momentum 0.1, unbiased batch variance); so does this layer, for the
    border only. Keras's moving statistics themselves follow `BatchNorm`.

    Args:
        padding: int >= 0, border width. Defaults to `1`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, height, width, channels]` (time folded into batch);
    output `[batch, height + 2 * padding, width + 2 * padding, channels]`.

    Example:
    >>> y = MetaSpikeFormerBNAndPad()(keras.random.normal((8, 14, 14, 64)))  # (8, 16, 16, 64)
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        if int(padding) < 0:
            raise ValueError(f"`padding` must be >= 0; got {padding}.")
        self.padding = int(padding)

    def build(self, input_shape):
        self.bn = BatchNorm(name="bn", dtype=self.dtype_policy)
        self.bn.build(input_shape)

    def _border_statistics(self, inputs, training):
        mean, variance = self.bn.moving_mean, self.bn.moving_variance
        if not (training and self.bn.trainable):
            return ops.convert_to_tensor(mean), ops.convert_to_tensor(variance)
        stats = ops.stop_gradient(ops.cast(inputs, "float32"))
        count = ops.cast(ops.size(stats), "float32") / inputs.shape[-1]
        batch_mean, batch_var = ops.moments(stats, axes=(0, 1, 2))
        unbiased = batch_var * count / ops.maximum(count - 1.0, 1.0)
        momentum = self.bn.momentum
        return (
            mean * momentum + batch_mean * (1.0 - momentum),
            variance * momentum + unbiased * (1.0 - momentum),
        )

    def call(self, inputs, training=None):
        mean, variance = self._border_statistics(inputs, training)
        outputs = self.bn(inputs, training=training)
        p = self.padding
        if not p:
            return outputs
        gamma = ops.stop_gradient(ops.convert_to_tensor(self.bn.gamma))
        beta = ops.stop_gradient(ops.convert_to_tensor(self.bn.beta))
        value = beta - mean * gamma / ops.sqrt(variance + self.bn.epsilon)
        height, width = inputs.shape[1], inputs.shape[2]
        border = np.pad(
            np.zeros((height, width, 1), "float32"), ((p, p), (p, p), (0, 0)),
            constant_values=1.0,
        )  # fmt: skip
        padded = ops.pad(outputs, ((0, 0), (p, p), (p, p), (0, 0)))
        # Interior pixels add an exact zero; border pixels get the value.
        return padded + ops.cast(ops.stop_gradient(value) * border, padded.dtype)

    def compute_output_shape(self, input_shape):
        p = 2 * self.padding
        b, h, w, c = input_shape
        return (b, None if h is None else h + p, None if w is None else w + p, c)

    def get_config(self):
        config = super().get_config()
        config["padding"] = self.padding
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerRepConv(keras.layers.Layer):
    """RepConv: 1x1 conv -> BN-and-pad -> depthwise 3x3 (no padding) -> 1x1 conv -> BN.

    No convolution has a bias. Runs on time-folded maps.

    Args:
        filters: int, output channels.
        kernel_initializer: initializer of the convolutions. Defaults to
            PyTorch's conv default.
        **kwargs: standard layer arguments.

    Input shape: `[batch, height, width, channels]`; output `[..., filters]`.

    Example:
    >>> y = MetaSpikeFormerRepConv(64)(keras.random.normal((8, 14, 14, 64)))
    """

    def __init__(self, filters, kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or TORCH_DEFAULT_INIT
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        init, dtype = self.kernel_initializer, self.dtype_policy
        self.conv1 = keras.layers.Dense(
            channels, use_bias=False, kernel_initializer=fresh(init), name="conv1",
            dtype=dtype,
        )  # fmt: skip
        self.bn_pad = MetaSpikeFormerBNAndPad(1, name="bn_pad", dtype=dtype)
        self.depthwise = DepthwiseConv2D(
            3, use_bias=False, depthwise_initializer=fresh(init), name="depthwise",
            dtype=dtype,
        )  # fmt: skip
        self.conv2 = keras.layers.Dense(
            self.filters, use_bias=False, kernel_initializer=fresh(init),
            name="conv2", dtype=dtype,
        )  # fmt: skip
        self.bn = BatchNorm(name="bn", dtype=dtype)
        shape = built(self.conv1, input_shape)
        shape = built(self.bn_pad, shape)
        shape = built(self.depthwise, shape)
        shape = built(self.conv2, shape)
        self.bn.build(shape)

    def call(self, inputs, training=None):
        x = self.bn_pad(self.conv1(inputs), training=training)
        x = self.conv2(self.depthwise(x))
        return self.bn(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
