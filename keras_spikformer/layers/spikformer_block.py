"""Spikformer encoder block."""

import keras

from keras_spikformer.layers.remat import rematerialize
from keras_spikformer.layers.spiking_mlp import SpikingMLP
from keras_spikformer.layers.spiking_self_attention import SpikingSelfAttention


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikformerBlock(keras.layers.Layer):
    """`x = x + SSA(x); x = x + MLP(x)`, with no layer norm (as in the reference).

    The residual stream carries integer spike counts, not spikes.

    Args:
        hidden_dim: int, token features.
        num_heads: int, attention heads.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        qkv_bias: bool, bias on q/k/v. Defaults to `False`.
        attention_scale: float. Defaults to `0.125`.
        attention_v_threshold: float. Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (batch-norm moving statistics are
            still updated once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, tokens, hidden_dim]`.

    Example:
    >>> block = SpikformerBlock(hidden_dim=384, num_heads=12)
    >>> y = block(keras.random.normal((2, 4, 64, 384)))
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=False,
        attention_scale=0.125,
        attention_v_threshold=0.5,
        neuron_config=None,
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.remat = bool(remat)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.attention_scale = float(attention_scale)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})
        # Fail on impossible head counts at construction, not at build.
        self.attn = SpikingSelfAttention(
            self.hidden_dim,
            self.num_heads,
            qkv_bias=self.qkv_bias,
            attention_scale=self.attention_scale,
            attention_v_threshold=self.attention_v_threshold,
            neuron_config=self.neuron_config,
            name="attn",
            dtype=self.dtype_policy,
        )
        self.mlp = SpikingMLP(
            self.hidden_dim,
            self.mlp_ratio,
            neuron_config=self.neuron_config,
            name="mlp",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.attn.build(input_shape)
        self.mlp.build(input_shape)

    def call(self, inputs, training=None):
        if self.remat and training:
            return rematerialize(self, self._training_forward, inputs)
        return self._forward(inputs, training)

    def _training_forward(self, inputs):
        return self._forward(inputs, True)

    def _forward(self, inputs, training):
        x = inputs + self.attn(inputs, training=training)
        return x + self.mlp(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "attention_scale": self.attention_scale,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
                "remat": self.remat,
            }
        )
        return config
