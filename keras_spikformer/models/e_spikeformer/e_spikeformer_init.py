"""`HostFanInUniform`: PyTorch's default conv/linear kernel init, drawn with NumPy."""

import math

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_spikformer")
class HostFanInUniform(keras.initializers.Initializer):
    """`U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (PyTorch's conv/linear default), drawn on the host.

    The same distribution as `VarianceScaling(1/3, "fan_in", "uniform")`,
    but drawn with NumPy: on JAX every new kernel shape of a device-side
    random initializer costs one XLA compilation (about 40 of them for an
    E-SpikeFormer). Unseeded draws follow NumPy's global state, which
    `keras.utils.set_random_seed` seeds.

    Args:
        seed: int or `None`.

    Example:
    >>> kernel = HostFanInUniform(seed=0)((3, 3, 16, 64))
    """

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(d) for d in shape)
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in = max(1, (shape[-2] if len(shape) > 1 else shape[0]) * receptive)
        limit = 1.0 / math.sqrt(fan_in)
        rng = np.random.default_rng(self.seed) if self.seed is not None else np.random
        values = rng.uniform(-limit, limit, size=shape)
        return keras.ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}
