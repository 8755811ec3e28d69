"""`layers.DepthwiseConv2D`: Keras's layer, computed as shifted products on JAX."""

from unittest import mock

import keras
import numpy as np
import pytest

from keras_spikformer.layers import depthwise_conv
from keras_spikformer.layers.depthwise_conv import DepthwiseConv2D


def loss_and_gradients(layer, x):
    """Loss `sum(y * cos(y))`, its gradients for the kernel, bias and input."""
    x = keras.Variable(x, name="x")
    variables = [*layer.trainable_variables, x]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(values):
            y, _ = layer.stateless_call(values[:-1], [], values[-1])
            return keras.ops.sum(y * keras.ops.cos(y))

        value, grads = jax.value_and_grad(loss)([v.value for v in variables])
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            y = layer(x)
            value = keras.ops.sum(y * keras.ops.cos(y))
        grads = tape.gradient(value, [v.value for v in variables])
    else:
        y = layer(x.value.requires_grad_())
        value = keras.ops.sum(y * keras.ops.cos(y))
        value.backward()
        grads = [v.value.grad for v in variables]
    return float(value), [keras.ops.convert_to_numpy(g) for g in grads]


@pytest.mark.parametrize(
    "kernel_size, padding", [(7, "same"), (4, "same"), (3, "valid"), (5, "same")]
)
def test_outputs_and_gradients_are_keras_depthwise_conv(kernel_size, padding):
    rng = np.random.default_rng(0)
    x = (rng.random((3, 12, 10, 6)) > 0.7).astype("float32")  # spikes, as in the models
    ours = DepthwiseConv2D(kernel_size, padding=padding, bias_initializer="uniform")
    keras_layer = keras.layers.DepthwiseConv2D(kernel_size, padding=padding)
    ours.build(x.shape)
    keras_layer.build(x.shape)
    keras_layer.set_weights(ours.get_weights())
    taps = depthwise_conv.depthwise_conv_taps
    with mock.patch.object(depthwise_conv, "depthwise_conv_taps", wraps=taps) as used:
        outputs = ours(x)
    # JAX computes the shifted products; the other backends keep their kernels.
    assert used.called == (keras.backend.backend() == "jax")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(outputs),
        keras.ops.convert_to_numpy(keras_layer(x)),
        atol=1e-6,
    )
    value, grads = loss_and_gradients(ours, x)
    keras_value, keras_grads = loss_and_gradients(keras_layer, x)
    np.testing.assert_allclose(value, keras_value, rtol=1e-6)
    for name, g, k in zip(("kernel", "bias", "input"), grads, keras_grads, strict=True):
        assert g.shape == k.shape, name
        np.testing.assert_allclose(
            g, k, rtol=0, atol=1e-6 * np.abs(k).max(), err_msg=name
        )


def test_other_configurations_are_keras_call():
    x = np.random.default_rng(1).random((2, 9, 9, 4)).astype("float32")
    for options in ({"strides": 2}, {"dilation_rate": 2}, {"depth_multiplier": 2}):
        ours = DepthwiseConv2D(3, padding="same", **options)
        keras_layer = keras.layers.DepthwiseConv2D(3, padding="same", **options)
        ours.build(x.shape)
        keras_layer.build(x.shape)
        keras_layer.set_weights(ours.get_weights())
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours(x)),
            keras.ops.convert_to_numpy(keras_layer(x)),
            atol=1e-6,
        )


def test_layer_serializes_as_itself():
    layer = DepthwiseConv2D(7, padding="same", use_bias=False, name="dwconv")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is DepthwiseConv2D
    assert restored.get_config() == layer.get_config()
