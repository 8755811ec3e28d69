"""Tiny models for tests, built without Keras's random initialisers."""

import contextlib
from unittest import mock

import keras
import numpy as np


@contextlib.contextmanager
def zero_initialisers():
    """Random initialisers return numpy zeros while models are built inside.

    For models whose every variable is overwritten next (reference fixtures,
    numpy weights): JAX would otherwise compile one random kernel per weight
    shape, most of a small test's time on that backend.

    Example:
    >>> with zero_initialisers():
    ...     model = Spikformer(backbone, num_classes=10)
    """

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype or "float32")

    classes = (
        keras.initializers.TruncatedNormal,
        keras.initializers.VarianceScaling,
        keras.initializers.RandomUniform,
    )
    with contextlib.ExitStack() as stack:
        for cls in classes:
            stack.enter_context(mock.patch.object(cls, "__call__", zeros))
        yield


def tiny_frames_spikformer(num_timesteps=3, num_classes=5):
    """An event-frame Spikformer on `[batch, T, 8, 8, 2]` (width 16, one block,
    two heads) with zero kernels: assign the weights the test needs.

    Example:
    >>> model = tiny_frames_spikformer(num_timesteps=2, num_classes=3)
    """
    from keras_spikformer.models.spikformer import Spikformer, SpikformerBackbone

    with zero_initialisers():
        backbone = SpikformerBackbone(
            image_shape=(8, 8, 2), patch_size=4, hidden_dim=16, num_layers=1,
            num_heads=2, num_timesteps=num_timesteps, encoding="frames",
        )  # fmt: skip
        return Spikformer(backbone, num_classes=num_classes)
