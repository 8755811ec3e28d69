"""Direct (repetition) encoding of static images into a time sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spikformer")
class DirectEncoding(keras.layers.Layer):
    """Repeats a static input over `num_timesteps` steps: `[B, ...] -> [B, T, ...]`.

    The first spiking layer after it acts as the encoder (as in Spikformer).

    Args:
        num_timesteps: int >= 1, the number of time steps `T`.
        **kwargs: standard layer arguments.

    Example:
    >>> seq = DirectEncoding(4)(keras.random.normal((2, 32, 32, 3)))  # (2, 4, 32, 32, 3)
    """

    def __init__(self, num_timesteps, **kwargs):
        super().__init__(**kwargs)
        if int(num_timesteps) < 1:
            raise ValueError(f"`num_timesteps` must be >= 1; got {num_timesteps}.")
        self.num_timesteps = int(num_timesteps)

    def call(self, inputs):
        return ops.repeat(ops.expand_dims(inputs, 1), self.num_timesteps, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_timesteps) + tuple(input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config["num_timesteps"] = self.num_timesteps
        return config
