"""torch-backend kernels for the training step: PyTorch's own fused operators.

Eager torch runs every `keras.ops` call as its own pass over memory; the
closed-form gradients written for XLA (which fuses them) cost about ten
full-size passes per batch norm there. These helpers call the native PyTorch
kernels instead (the operators the reference implementation uses). Only
imported on the torch backend.
"""

import torch
import torch.nn.functional as F


def batch_moments(x):
    """Biased batch mean and variance of a `[rows, channels]` matrix, no gradient.

    Args:
        x: float tensor `[rows, channels]`.

    Returns:
        `(mean, variance)`, each `[channels]`.

    Example:
    >>> mean, variance = batch_moments(torch.randn(64, 8))
    """
    with torch.no_grad():
        variance, mean = torch.var_mean(x, dim=0, correction=0)
    return mean, variance


def batch_normalize(x, gamma, beta, epsilon):
    """Training-mode batch norm of `[rows, channels]` with batch statistics.

    PyTorch's `batch_norm` kernel forward and backward (its gradient is the
    closed form of `keras_spikformer.layers.BatchNorm`); no running statistics
    are touched.

    Args:
        x: float tensor `[rows, channels]`.
        gamma: scale `[channels]`.
        beta: offset `[channels]`.
        epsilon: float added to the variance.

    Returns:
        Tensor like `x`.

    Example:
    >>> y = batch_normalize(torch.randn(64, 8), torch.ones(8), torch.zeros(8), 1e-5)
    """
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=epsilon)
