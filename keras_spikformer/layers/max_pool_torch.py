"""`max_pool_3x3_s2` on the torch backend: PyTorch's kernel, no layout copies."""

import torch.nn.functional as F


def max_pool_3x3_s2(x):
    """PyTorch's `MaxPool2d(3, 2, 1)` on a channels-last torch tensor.

    A `[batch, height, width, channels]` tensor viewed as `[batch, channels,
    height, width]` is torch's `channels_last` memory format: the pooling kernel
    reads it in place and writes `channels_last`, so neither side needs the
    transposing copies of Keras's `ops.max_pool` (two per call), and the `-inf`
    border is the kernel's own padding rather than a padded copy. Forward and
    gradient (to the first maximum of each window) are PyTorch's.

    Args:
        x: torch tensor `[batch, height, width, channels]`.

    Returns:
        Tensor `[batch, ceil(height / 2), ceil(width / 2), channels]`.

    Example:
    >>> y = max_pool_3x3_s2(torch.rand(2, 32, 32, 96))  # (2, 16, 16, 96)
    """
    pooled = F.max_pool2d(x.permute(0, 3, 1, 2), 3, stride=2, padding=1)
    return pooled.permute(0, 2, 3, 1)
