"""Spiking Self Attention (SSA)."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import SpikingDense
from keras_spikformer.layers.time_folding import fold_time, unfold_time
from keras_spikformer.neurons import LIFNeuron


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikingSelfAttention(keras.layers.Layer):
    """Spiking Self Attention: softmax-free attention between spike tensors.

    `q, k, v = LIF(BN(Linear(x)))`; per head `A = q k^T v * scale`; heads are
    merged, fired by an attention neuron (threshold `attention_v_threshold`)
    and projected by `LIF(BN(Linear(.)))`. Because q, k and v are binary, both
    product orders give bit-identical integers, so the cheaper one is used
    (`(q k^T) v` when tokens < head size, `q (k^T v)` otherwise).

    Args:
        hidden_dim: int, token features `D`; must be divisible by `num_heads`.
        num_heads: int, heads; channel `c` belongs to head `c // (D / num_heads)`.
        qkv_bias: bool, bias on the q/k/v linear layers (CIFAR reference: True,
            ImageNet/DVS reference: False). Defaults to `False`.
        attention_scale: float, the fixed scale (no softmax). Defaults to `0.125`.
        attention_v_threshold: float, threshold of the attention neuron.
            Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments for all neurons.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, tokens, hidden_dim]`.

    Example:
    >>> ssa = SpikingSelfAttention(hidden_dim=384, num_heads=12)
    >>> y = ssa(keras.random.uniform((2, 4, 64, 384)) > 0.8)

    References:
        Zhou et al., ICLR 2023 (arXiv 2209.15425), Section 3.3.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        qkv_bias=False,
        attention_scale=0.125,
        attention_v_threshold=0.5,
        neuron_config=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads:
            raise ValueError(
                f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` "
                f"({num_heads}); pick num_heads among the divisors of hidden_dim."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.qkv_bias = bool(qkv_bias)
        self.attention_scale = float(attention_scale)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})

    def build(self, input_shape):
        def unit(name, use_bias):
            layer = SpikingDense(
                self.hidden_dim,
                use_bias=use_bias,
                neuron_config=self.neuron_config,
                name=name,
                dtype=self.dtype_policy,
            )
            layer.build(input_shape)
            return layer

        self.q = unit("q", self.qkv_bias)
        self.k = unit("k", self.qkv_bias)
        self.v = unit("v", self.qkv_bias)
        attn_config = {**self.neuron_config, "v_threshold": self.attention_v_threshold}
        self.attn_lif = LIFNeuron(
            **attn_config, name="attn_lif", dtype=self.dtype_policy
        )
        self.attn_lif.build(input_shape)
        self.proj = unit("proj", True)

    def _split_heads(self, x):
        # [B, T, N, D] -> [B*T, heads, N, D/heads]
        n = x.shape[2]
        x = ops.reshape(fold_time(x), (-1, n, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    @property
    def head_dim(self):
        return self.hidden_dim // self.num_heads

    def call(self, inputs, training=None):
        num_timesteps, num_tokens = inputs.shape[1], inputs.shape[2]
        q = self._split_heads(self.q(inputs, training=training))
        k = self._split_heads(self.k(inputs, training=training))
        v = self._split_heads(self.v(inputs, training=training))
        k_t = ops.transpose(k, (0, 1, 3, 2))
        if num_tokens < self.head_dim:
            x = ops.matmul(ops.matmul(q, k_t), v)
        else:
            x = ops.matmul(q, ops.matmul(k_t, v))
        x = x * ops.cast(self.attention_scale, x.dtype)
        x = ops.reshape(
            ops.transpose(x, (0, 2, 1, 3)), (-1, num_tokens, self.hidden_dim)
        )
        x = self.attn_lif(unfold_time(x, num_timesteps))
        return self.proj(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "qkv_bias": self.qkv_bias,
                "attention_scale": self.attention_scale,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
            }
        )
        return config
