"""PyTorch's `MaxPool2d(3, stride=2, padding=1)` with its tie-breaking gradient."""

import keras
from keras import ops

_WINDOW = [(di, dj) for di in range(3) for dj in range(3)]


def max_pool_3x3_s2(x):
    """3x3 max pooling, stride 2, padding 1 (`-inf`), channels last.

    Equal to PyTorch's `MaxPool2d(3, 2, 1)` forward and backward: where a
    window holds several maxima (the rule for spike inputs, not the exception)
    the gradient goes to the first in row-major order, as PyTorch's argmax
    does. Written as nine strided views of the padded input and a custom
    gradient, which XLA compiles to element-wise loops instead of the slower
    generic `select_and_scatter`.

    Args:
        x: tensor `[batch, height, width, channels]`.

    Returns:
        Tensor `[batch, ceil(height / 2), ceil(width / 2), channels]`.

    Example:
    >>> y = max_pool_3x3_s2(keras.random.uniform((2, 32, 32, 96)))  # (2, 16, 16, 96)
    """
    _, height, width, channels = x.shape
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    if keras.backend.backend() == "torch":
        # torch's own pooling kernel on the channels-last layout: one op each
        # way instead of ~60 eager element-wise ops, with the same gradient.
        from keras_spikformer.layers import max_pool_torch

        return max_pool_torch.max_pool_3x3_s2(ops.convert_to_tensor(x))
    # Pad to an even (2 * out + 2) grid so that a reshape splits rows and
    # columns by parity: padded[2a + p] = planes[a, p].
    padding = ((0, 0), (1, 2 * out_h + 1 - height), (1, 2 * out_w + 1 - width), (0, 0))

    @ops.custom_gradient
    def pool(x):
        padded = ops.pad(x, padding, constant_values=float("-inf"))
        planes = ops.reshape(padded, (-1, out_h + 1, 2, out_w + 1, 2, channels))
        views = [
            planes[
                :, di // 2 : di // 2 + out_h, di % 2, dj // 2 : dj // 2 + out_w, dj % 2
            ]
            for di, dj in _WINDOW
        ]
        outputs = views[0]
        for view in views[1:]:
            outputs = ops.maximum(outputs, view)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            zeros = ops.zeros_like(upstream)
            by_parity = {}
            taken = None
            for (di, dj), view in zip(_WINDOW, views, strict=True):
                hit = ops.equal(view, outputs)
                first = (
                    hit
                    if taken is None
                    else ops.logical_and(hit, ops.logical_not(taken))
                )
                taken = hit if taken is None else ops.logical_or(taken, hit)
                part = ops.where(first, upstream, zeros)
                a, b = di // 2, dj // 2
                part = ops.pad(part, ((0, 0), (a, 1 - a), (b, 1 - b), (0, 0)))
                key = (di % 2, dj % 2)
                by_parity[key] = part if key not in by_parity else by_parity[key] + part
            rows = [
                ops.stack([by_parity[(p, 0)], by_parity[(p, 1)]], axis=3)
                for p in range(2)
            ]
            grad_padded = ops.reshape(
                ops.stack(rows, axis=2), (-1, 2 * out_h + 2, 2 * out_w + 2, channels)
            )
            return grad_padded[:, 1 : height + 1, 1 : width + 1, :]

        return outputs, grad

    return pool(x)
