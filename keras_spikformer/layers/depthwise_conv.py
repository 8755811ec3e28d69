"""`keras.layers.DepthwiseConv2D` written as shifted products on JAX (XLA:CPU)."""

import keras
from keras import ops


def _correlate(padded, kernel, out_h, out_w, compensated=False):
    """`sum_ij padded[:, i:i + out_h, j:j + out_w, :] * kernel[i, j]`.

    With `compensated`, the sum carries its rounding error (TwoSum) and adds it
    back at the end: the result is the products' sum rounded once.
    """
    total = error = None
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            term = padded[:, i : i + out_h, j : j + out_w, :] * kernel[i, j]
            if total is None:
                total = term
                continue
            new_total = total + term
            if compensated:
                rounded = new_total - total
                lost = (total - (new_total - rounded)) + (term - rounded)
                error = lost if error is None else error + lost
            total = new_total
    return total if error is None else total + error


def _gradients(x, upstream, kernel, pads):
    """The input and kernel gradients of `_correlate(pad(x, pads), kernel)`.

    `d x` is the correlation of the output gradient, padded by the complement
    of `pads` (`k - 1 - pad` on each side), with the flipped kernel;
    `d kernel[i, j, c] = sum_nhw padded[n, h + i, w + j, c] * upstream[n, h, w, c]`. Both run in an `ops.fori_loop` over the images: an
    image and its gradient stay in the CPU's cache for all k * k taps (2.5x
    faster than k * k passes over the whole batch), and `d x` is the loop's
    buffer, which XLA cannot fuse into its consumers (fused into the LIF
    backward's concatenation over time, the k * k products ran 15x slower).
    `d x` is summed with compensation (rounded once): with plain float32 sums
    the Max-Former fixture's gradients (tests/test_maxformer_exactness.py) left
    their tolerance, by 4%.

    Args:
        x: the input `[batch, height, width, C]`.
        upstream: the output gradient `[batch, out_h, out_w, C]`.
        kernel: `[k_h, k_w, C]`.
        pads: `((top, bottom), (left, right))` padding of `x` in the forward pass.

    Returns:
        `(d x, d kernel)`.
    """
    k_h, k_w, channels = kernel.shape
    batch, height, width, _ = x.shape
    _, out_h, out_w, _ = upstream.shape
    flipped = ops.flip(ops.flip(kernel, axis=0), axis=1)
    back = tuple(
        (k - 1 - a, k - 1 - b) for k, (a, b) in zip((k_h, k_w), pads, strict=True)
    )

    def one_image(n, carry):
        d_x, d_kernel = carry
        image = ops.slice(x, (n, 0, 0, 0), (1, height, width, channels))
        image = ops.pad(image, ((0, 0), *pads, (0, 0)))
        grad = ops.slice(upstream, (n, 0, 0, 0), (1, out_h, out_w, channels))
        grad_padded = ops.pad(grad, ((0, 0), *back, (0, 0)))
        d_x = ops.slice_update(
            d_x,
            (n, 0, 0, 0),
            _correlate(grad_padded, flipped, height, width, compensated=True),
        )
        taps = [
            ops.sum(image[:, i : i + out_h, j : j + out_w, :] * grad, axis=(0, 1, 2))
            for i in range(k_h)
            for j in range(k_w)
        ]
        return d_x, d_kernel + ops.reshape(ops.stack(taps), kernel.shape)

    zeros = (
        ops.zeros((batch, height, width, channels), dtype=upstream.dtype),
        ops.zeros(kernel.shape, dtype=upstream.dtype),
    )
    return ops.fori_loop(0, batch, one_image, zeros)


def depthwise_conv_taps(x, kernel, padding):
    """Stride-1 depthwise convolution as k * k shifted products, custom gradient.

    The same sums as `keras.ops.depthwise_conv` (depth multiplier 1, channels
    last) in another order. XLA:CPU's grouped convolution is slow: on 32 images
    of 56x56x128, a 7x7 layer took 1.33 s forward and 3.26 s forward with both
    gradients; shifted products take 0.08 s and 0.44 s
    (`benchmarks/depthwise_conv.py`, 2-core Intel Xeon with AVX-512). The
    gradients are `_gradients`.

    Args:
        x: tensor `[batch, height, width, channels]` with static dimensions.
        kernel: tensor `[k_h, k_w, channels]`.
        padding: `"same"` or `"valid"`.

    Returns:
        Tensor `[batch, out_height, out_width, channels]`.

    Example:
    >>> y = depthwise_conv_taps(keras.random.normal((2, 8, 8, 4)), keras.ops.ones((3, 3, 4)), "same")
    """
    _, height, width, _ = x.shape
    k_h, k_w = kernel.shape[0], kernel.shape[1]
    if padding == "same":  # Keras / TensorFlow: the extra row or column at the end
        pads = ((k_h - 1) // 2, k_h // 2), ((k_w - 1) // 2, k_w // 2)
    else:
        pads = (0, 0), (0, 0)
    out_h = height + sum(pads[0]) - k_h + 1
    out_w = width + sum(pads[1]) - k_w + 1

    @ops.custom_gradient
    def forward(x, kernel):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return _gradients(x, upstream, kernel, pads)

        padded = ops.pad(x, ((0, 0), *pads, (0, 0)))
        return _correlate(padded, kernel, out_h, out_w), grad

    return forward(x, kernel)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` computed by `depthwise_conv_taps` on JAX.

    Same variables, outputs (to float rounding) and gradients as Keras's layer.
    On JAX, stride 1, no dilation, depth multiplier 1, channels last and static
    input dimensions take `depthwise_conv_taps`; everything else (other
    backends, where the native kernels are fast) is Keras's `call`.

    Args:
        **kwargs: `keras.layers.DepthwiseConv2D` arguments.

    Example:
    >>> layer = DepthwiseConv2D(7, padding="same", use_bias=False, name="dwconv")
    >>> y = layer(keras.random.normal((2, 16, 16, 32)))
    """

    def call(self, inputs):
        use_taps = (
            keras.backend.backend() == "jax"
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.depth_multiplier == 1
            and self.data_format == "channels_last"
            and None not in tuple(inputs.shape)
        )
        if not use_taps:
            return super().call(inputs)
        kernel = ops.reshape(self.kernel, tuple(self.kernel.shape[:3]))
        outputs = depthwise_conv_taps(inputs, kernel, self.padding)
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
