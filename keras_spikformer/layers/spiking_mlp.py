"""Spiking MLP of a Spikformer block."""

import keras

from keras_spikformer.layers.spiking_units import SpikingDense


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikingMLP(keras.layers.Layer):
    """Two spiking linear units: `LIF(BN(fc2(LIF(BN(fc1(x))))))`.

    Args:
        hidden_dim: int, input and output features `D`.
        mlp_ratio: float, the inner width is `int(hidden_dim * mlp_ratio)`.
            Defaults to `4.0`.
        neuron_config: dict of `LIFNeuron` arguments.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, tokens, hidden_dim]`.

    Example:
    >>> mlp = SpikingMLP(hidden_dim=384, mlp_ratio=4)
    >>> y = mlp(keras.random.normal((2, 4, 64, 384)))
    """

    def __init__(self, hidden_dim, mlp_ratio=4.0, neuron_config=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.mlp_ratio = float(mlp_ratio)
        self.neuron_config = dict(neuron_config or {})

    def build(self, input_shape):
        inner = int(self.hidden_dim * self.mlp_ratio)
        self.fc1 = SpikingDense(
            inner, neuron_config=self.neuron_config, name="fc1", dtype=self.dtype_policy
        )
        self.fc1.build(input_shape)
        self.fc2 = SpikingDense(
            self.hidden_dim,
            neuron_config=self.neuron_config,
            name="fc2",
            dtype=self.dtype_policy,
        )
        self.fc2.build(self.fc1.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return self.fc2(self.fc1(inputs, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "mlp_ratio": self.mlp_ratio,
                "neuron_config": self.neuron_config,
            }
        )
        return config
