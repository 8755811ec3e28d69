"""E-SpikeFormer Base transformer block: SepConv, linear spike attention with a 4x wider V, MLP."""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.models.e_spikeformer.e_spikeformer_layers import (
    ESpikeFormerLayer,
    ESpikeFormerMLP,
    ESpikeFormerSepConv,
    build_all,
    dense,
    with_channels,
)


def split_heads(x, num_heads):
    """`[..., H, W, C]` -> `[B', heads, N, C/heads]`, head-major channels, row-major tokens."""
    shape = tuple(x.shape)
    tokens = ops.reshape(
        x, (-1, shape[-3] * shape[-2], num_heads, shape[-1] // num_heads)
    )
    return ops.transpose(tokens, (0, 2, 1, 3))


def merge_heads(x, like_shape):
    """Inverse of `split_heads` into a `like_shape`-shaped map (channels may differ)."""
    heads, dim = x.shape[1], x.shape[3]
    x = ops.transpose(x, (0, 2, 1, 3))
    return ops.reshape(x, (-1,) + tuple(like_shape[1:-1]) + (heads * dim,))


def linear_attention(q, k, v, scale):
    """`Q (K^T V) * scale` per head (no softmax); equals `(Q K^T) V * scale`."""
    kv = ops.matmul(ops.transpose(k, (0, 1, 3, 2)), v)
    out = ops.matmul(q, kv)
    # The scale as a tensor of the compute dtype (PyTorch multiplies by fp32(scale)).
    return out * ops.cast(scale, out.dtype)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerBaseAttention(ESpikeFormerLayer):
    """Base linear spike attention (`MS_Attention_linear`).

    ```
    s = SN(x);  Q = SN(BN(Wq s));  K = SN(BN(Wk s));  V = SN(BN(Wv s))   # V: 4C wide
    A = (Q K^T) V * 2 / sqrt(C / heads)                                    # per head
    out = BN(Wp SN(A))
    ```

    Args:
        num_heads: int. Defaults to `8`.
        value_expansion: int, V and projection width over C. Defaults to `4`.
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        **kwargs: standard layer arguments.

    Input `[batch, H, W, C]`; output the branch, same shape.

    Example:
    >>> y = ESpikeFormerBaseAttention(8)(keras.random.normal((2, 4, 4, 32)))
    """

    def __init__(self, num_heads=8, value_expansion=4, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.value_expansion = int(value_expansion)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        self.scale = 2.0 * (channels // self.num_heads) ** -0.5
        wide = self.value_expansion * channels
        for name in ("head", "q", "k", "v", "attn"):
            setattr(self, f"{name}_spike", self.sn(f"{name}_spike"))
        for name, units in (("q", channels), ("k", channels), ("v", wide),
                            ("proj", channels)):  # fmt: skip
            setattr(self, f"{name}_conv", dense(units, f"{name}_conv", init, dtype))
            setattr(self, f"{name}_bn", BatchNorm(name=f"{name}_bn", dtype=dtype))
        v_shape = with_channels(input_shape, wide)
        build_all(
            *((getattr(self, f"{n}_spike"), input_shape) for n in ("head", "q", "k")),
            (self.v_spike, v_shape), (self.attn_spike, v_shape),
            (self.q_conv, input_shape), (self.k_conv, input_shape),
            (self.v_conv, input_shape), (self.proj_conv, v_shape),
            (self.q_bn, input_shape), (self.k_bn, input_shape), (self.v_bn, v_shape),
            (self.proj_bn, input_shape),
        )  # fmt: skip

    def _project(self, name, s, training):
        conv, bn = getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn")
        return getattr(self, f"{name}_spike")(bn(conv(s), training=training))

    def call(self, inputs, training=None):
        s = self.head_spike(inputs)
        q, k, v = (split_heads(self._project(n, s, training), self.num_heads)
                   for n in ("q", "k", "v"))  # fmt: skip
        a = merge_heads(linear_attention(q, k, v, self.scale), inputs.shape)
        a = self.attn_spike(a)
        return self.proj_bn(self.proj_conv(a), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_heads": self.num_heads, "value_expansion": self.value_expansion}
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerBaseBlock(RematMixin, ESpikeFormerLayer):
    """`x += SepConv_3(x); x += Attention(x); x += MLP(x)` (no layer scale).

    Args:
        num_heads: int. Defaults to `8`.
        mlp_ratio: float. Defaults to `4.0`.
        value_expansion: int. Defaults to `4`.
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Example:
    >>> y = ESpikeFormerBaseBlock(8)(keras.random.normal((2, 4, 4, 32)))
    """

    def __init__(self, num_heads=8, mlp_ratio=4.0, value_expansion=4, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.value_expansion = int(value_expansion)

    def build(self, input_shape):
        common = {
            "neuron_config": self.neuron_config,
            "kernel_initializer": self.kernel_initializer,
            "dtype": self.dtype_policy,
        }
        self.conv = ESpikeFormerSepConv(3, name="conv", **common)
        self.attn = ESpikeFormerBaseAttention(
            self.num_heads, self.value_expansion, name="attn", **common
        )
        self.mlp = ESpikeFormerMLP(self.mlp_ratio, name="mlp", **common)
        build_all(
            (self.conv, input_shape), (self.attn, input_shape), (self.mlp, input_shape)
        )

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        x = inputs + self.conv(inputs, training=training)
        x = x + self.attn(x, training=training)
        return x + self.mlp(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "value_expansion": self.value_expansion,
            }
        )
        return config
