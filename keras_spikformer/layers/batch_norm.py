"""Batch normalisation with PyTorch's defaults and a closed-form training gradient."""

import math

import keras
from keras import ops


def column_sums(x):
    """Sums a `[rows, channels]` matrix over its rows, as `ones @ x`.

    A matrix product keeps XLA from fusing the producer of `x` into a
    reduction loop (which on CPU runs the fused element-wise work on one
    thread); the product itself runs at memory speed.

    Args:
        x: tensor `[rows, channels]`.

    Returns:
        Tensor `[channels]`.
    """
    ones = ops.ones((1, x.shape[0]), dtype=x.dtype)
    return ops.matmul(ones, x)[0]


@keras.saving.register_keras_serializable(package="keras_spikformer")
class BatchNorm(keras.layers.BatchNormalization):
    """`BatchNormalization` with PyTorch's defaults and a faster training step.

    Same variables, inference and moving-statistics update as Keras's layer
    (`moving = momentum * moving + (1 - momentum) * batch`, biased batch
    variance), with PyTorch's `BatchNorm` defaults (momentum 0.1 in PyTorch's
    convention, i.e. `momentum=0.9` here; `epsilon=1e-5`). In training, batch
    statistics are computed as matrix products with a ones vector and the
    backward pass uses the closed-form gradient

    ```
    dbeta = sum(dy); dgamma = sum(dy * xhat)
    dx = gamma / sqrt(var + eps) * (dy - dbeta / m - xhat * dgamma / m)
    ```

    instead of differentiating through the moments, which removes most of the
    reductions XLA otherwise emits (about 4% of a CIFAR training step on CPU,
    see `benchmarks/README.md`). Synchronised (multi-replica) statistics,
    masks, renormalisation, unknown dimensions and a non-last `axis` fall back
    to Keras's path.

    Args:
        momentum: float, weight of the old moving statistics. Defaults to
            `0.9` (PyTorch's 0.1).
        epsilon: float, added to the variance. Defaults to `1e-5`.
        **kwargs: other `keras.layers.BatchNormalization` arguments.

    Example:
    >>> bn = BatchNorm(name="bn")
    >>> y = bn(keras.random.normal((8, 64, 384)), training=True)
    """

    def __init__(self, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)

    def _uses_fast_path(self, inputs, training, mask):
        last_axis = self.axis in (-1, len(inputs.shape) - 1)
        return (
            None not in tuple(inputs.shape)
            and training
            and self.trainable
            and mask is None
            and last_axis
            and self.center
            and self.scale
            and not self.synchronized
            and not self.renorm
        )

    def call(self, inputs, training=None, mask=None):
        if not self._uses_fast_path(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        shape = tuple(inputs.shape)
        count = math.prod(shape[:-1])
        x = ops.reshape(ops.cast(inputs, "float32"), (count, shape[-1]))
        stats = ops.stop_gradient(x)
        mean = column_sums(stats) / count
        variance = column_sums(ops.square(stats - mean)) / count
        self.moving_mean.assign(
            self.moving_mean * self.momentum + mean * (1.0 - self.momentum)
        )
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        epsilon = self.epsilon

        # The statistics are arguments, not closed over: a JAX custom gradient
        # may not close over tracers of an enclosing `jax.checkpoint` (remat).
        @ops.custom_gradient
        def normalize(x, gamma, beta, mean, variance):
            outputs = ops.batch_normalization(
                x, mean, variance, axis=-1, offset=beta, scale=gamma, epsilon=epsilon
            )

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                inv_std = ops.rsqrt(variance + epsilon)
                x_hat = (x - mean) * inv_std
                d_beta = column_sums(upstream)
                d_gamma = column_sums(upstream * x_hat)
                # The centred upstream is corrected once more so that its
                # column sums are ~0 to float precision: a bias feeding a BN
                # has an exactly zero gradient, and keeps float noise only.
                centred = upstream - d_beta / count
                centred = centred - column_sums(centred) / count
                d_x = (gamma * inv_std) * (centred - x_hat * (d_gamma / count))
                zero = ops.zeros_like(mean)
                return d_x, d_gamma, d_beta, zero, zero

            return outputs, grad

        gamma = ops.cast(self.gamma, "float32")
        beta = ops.cast(self.beta, "float32")
        outputs = ops.reshape(normalize(x, gamma, beta, mean, variance), shape)
        return ops.cast(outputs, self.compute_dtype)
