"""Membrane-shortcut attention branches: Max-Former's SSA, MS-QKFormer's Q-K token attention."""

import keras

from keras_spikformer.layers import SpikingSelfAttention
from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT, SpikingDense
from keras_spikformer.models.maxformer.maxformer_units import MembraneUnit
from keras_spikformer.models.qkformer.qkformer_attention import QKTokenAttention
from keras_spikformer.neurons import LIFNeuron


def _dense_unit(layer, name, use_bias, input_shape):
    unit = SpikingDense(
        layer.hidden_dim, use_bias=use_bias, neuron_config=layer.neuron_config,
        kernel_initializer=TORCH_DEFAULT_INIT, name=name, dtype=layer.dtype_policy,
    )  # fmt: skip
    unit.build(input_shape)
    return unit


def _projection(layer, input_shape):
    """Dense (bias) -> BN, no neuron: the branch end of a membrane shortcut."""
    proj = MembraneUnit(
        layer.hidden_dim, synapse="dense", use_bias=True, fire_input=False,
        name="proj", dtype=layer.dtype_policy,
    )  # fmt: skip
    proj.build(input_shape)
    return proj


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MembraneSelfAttention(SpikingSelfAttention):
    """Spiking self-attention as a membrane-shortcut branch (Max-Former's `SSA`).

    `x = LIF(u)`; bias-free q/k/v spiking units; `Q (K^T V) * 0.125`; attention
    neuron at 0.5; then `BN(Dense(.))` with no output neuron.

    Args:
        **kwargs: `SpikingSelfAttention` arguments.

    Input/output shape: `[batch, time, tokens, hidden_dim]`.

    Example:
    >>> ssa = MembraneSelfAttention(hidden_dim=64, num_heads=1)
    >>> y = ssa(keras.random.normal((2, 2, 16, 64)))
    """

    def build(self, input_shape):
        self.x_lif = LIFNeuron(
            **self.neuron_config, name="x_lif", dtype=self.dtype_policy
        )
        self.x_lif.build(input_shape)
        self.q = _dense_unit(self, "q", self.qkv_bias, input_shape)
        self.k = _dense_unit(self, "k", self.qkv_bias, input_shape)
        self.v = _dense_unit(self, "v", self.qkv_bias, input_shape)
        attn_config = {**self.neuron_config, "v_threshold": self.attention_v_threshold}
        self.attn_lif = LIFNeuron(
            **attn_config, name="attn_lif", dtype=self.dtype_policy
        )
        self.attn_lif.build(input_shape)
        self.proj = _projection(self, input_shape)

    def call(self, inputs, training=None):
        return super().call(self.x_lif(inputs), training=training)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MembraneTokenAttention(QKTokenAttention):
    """Q-K token attention as a membrane-shortcut branch (MS-QKFormer's).

    `x = LIF(u)` (the reference's `proj_lif`), then `QKTokenAttention`'s mask
    on K, then `BN(Dense(.))` with no output neuron.

    Args:
        **kwargs: `QKTokenAttention` arguments.

    Input/output shape: `[batch, time, ..., hidden_dim]`.

    Example:
    >>> qka = MembraneTokenAttention(hidden_dim=96, num_heads=6)
    >>> y = qka(keras.random.normal((2, 2, 8, 8, 96)))
    """

    def build(self, input_shape):
        self.input_lif = LIFNeuron(
            **self.neuron_config, name="input_lif", dtype=self.dtype_policy
        )
        self.input_lif.build(input_shape)
        self.q = _dense_unit(self, "q", False, input_shape)
        self.k = _dense_unit(self, "k", False, input_shape)
        attn_config = {**self.neuron_config, "v_threshold": self.attention_v_threshold}
        self.attn_lif = LIFNeuron(
            **attn_config, name="attn_lif", dtype=self.dtype_policy
        )
        self.attn_lif.build(tuple(input_shape[:-1]) + (self.num_heads,))
        self.proj = _projection(self, input_shape)

    def call(self, inputs, training=None):
        return super().call(self.input_lif(inputs), training=training)
