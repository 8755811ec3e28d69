"""`keras.layers.Dense` whose kernel gradient is computed as `x^T @ dy`."""

import math

import keras
from keras import ops


def dense_matmul(x, kernel, bias=None):
    """`x @ kernel + bias` over the last axis, with an explicit gradient.

    The forward pass is the same matrix product as `keras.layers.Dense`. The
    gradients are those of autodiff, written as 2-D products: `dx = dy @ W^T`,
    `dW = x^T @ dy`, `db = sum(dy)`. JAX's transpose rule of a `[batch,
    tokens, features]` product instead computes `dW^T = dy^T @ x`, for which
    XLA:CPU materialises `dy` transposed; that copy, with the batch-norm
    backward fused into it, cost as much as the product itself (profile in
    `benchmarks/profile_step.py`).

    Meant for JAX (see `Dense`): TensorFlow's custom gradient refuses a
    variable as `kernel`, and with Keras's torch custom gradient a variable
    `kernel` received `dW` twice (through the forward pass too).

    Args:
        x: tensor `[..., in_features]` with static dimensions.
        kernel: tensor `[in_features, out_features]`.
        bias: tensor `[out_features]` or `None`.

    Returns:
        Tensor `[..., out_features]`.

    Example:
    >>> y = dense_matmul(keras.random.normal((2, 64, 384)), keras.ops.ones((384, 8)))
    """
    shape = tuple(x.shape)
    rows = math.prod(shape[:-1])
    units = kernel.shape[-1]

    @ops.custom_gradient
    def forward(x2d, kernel):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            d_x = ops.matmul(upstream, ops.transpose(kernel))
            d_kernel = ops.matmul(ops.transpose(x2d), upstream)
            return d_x, d_kernel

        return ops.matmul(x2d, kernel), grad

    y = forward(ops.reshape(x, (rows, shape[-1])), kernel)
    if bias is not None:
        y = ops.add(y, bias)
    return ops.reshape(y, shape[:-1] + (units,))


@keras.saving.register_keras_serializable(package="keras_spikformer")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` with the training-step gradient of `dense_matmul`.

    Same variables, outputs and gradients as Keras's layer; only the order in
    which the kernel gradient is written differs (see `dense_matmul`). Used on
    JAX only: on TensorFlow it changed nothing measurable, on torch the custom
    gradient made the eager training step slower. Other backends,
    inputs with an unknown dimension, quantized layers and LoRA use Keras's
    `call`.

    Args:
        **kwargs: `keras.layers.Dense` arguments.

    Example:
    >>> layer = Dense(384, name="dense")
    >>> y = layer(keras.random.normal((2, 64, 384)))
    """

    def call(self, inputs, training=None):
        use_custom = (
            keras.backend.backend() == "jax"
            and None not in tuple(inputs.shape)
            and not getattr(self, "lora_enabled", False)
            and getattr(self, "quantization_mode", None) is None
            and len(self.kernel.shape) == 2
        )
        if not use_custom:
            return super().call(inputs, training=training)
        kernel = ops.cast(self.kernel, inputs.dtype)
        bias = None if self.bias is None else ops.cast(self.bias, inputs.dtype)
        x = dense_matmul(inputs, kernel, bias)
        if self.activation is not None:
            x = self.activation(x)
        return x
