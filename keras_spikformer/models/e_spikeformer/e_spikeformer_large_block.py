"""E-SpikeFormer Large transformer block: RepConv q/k/v/proj, linear attention, layer scales."""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.models.e_spikeformer.e_spikeformer_attention import (
    linear_attention,
    merge_heads,
    split_heads,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_layers import (
    ESpikeFormerLayer,
    ESpikeFormerMLP,
    build_all,
    dense,
)

PROJECTIONS = ("q", "k", "v", "proj")


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerRepConv(ESpikeFormerLayer):
    """Two 1x1 convs with batch norms, `BN(W2 BN(W1 x))`, no biases.

    Args:
        hidden: int, inner width (`int(1.5 C)` in the Large models).
        inner_bn_width: int or `None` (= `hidden`), features of the first BN
            (the released 83M rep branch declares a BN wider than its conv:
            loadable, not runnable).
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        **kwargs: standard layer arguments.

    Example:
    >>> y = ESpikeFormerRepConv(96)(keras.random.normal((2, 1, 4, 4, 64)))
    """

    def __init__(self, hidden, inner_bn_width=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.inner_bn_width = None if inner_bn_width is None else int(inner_bn_width)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        self.conv1 = dense(self.hidden, "conv1", init, dtype)
        self.bn1 = BatchNorm(name="bn1", dtype=dtype)
        self.conv2 = dense(channels, "conv2", init, dtype)
        self.bn2 = BatchNorm(name="bn2", dtype=dtype)
        self.conv1.build(input_shape)
        self.bn1.build(tuple(input_shape[:-1]) + (self.inner_bn_width or self.hidden,))
        self.conv2.build(tuple(input_shape[:-1]) + (self.hidden,))
        self.bn2.build(tuple(input_shape))

    def call(self, inputs, training=None):
        x = self.bn1(self.conv1(inputs), training=training)
        return self.bn2(self.conv2(x), training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"hidden": self.hidden, "inner_bn_width": self.inner_bn_width})
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerLargeAttention(ESpikeFormerLayer):
    """Large linear spike attention (`MS_Attention_Conv_qkv_id`).

    ```
    s = SN(x);  Q, K, V = SN(BN(RepConv(s)))          # RepConv: C -> 1.5C -> C
    A = Q (K^T V) * 0.125                              # per head, no softmax
    out = BN(RepConv(SN(A)))
    ```

    Args:
        num_heads: int. Defaults to `8`.
        attention_scale: float. Defaults to `0.125`.
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        **kwargs: standard layer arguments.

    Input `[batch, time, H, W, C]`; output the branch, same shape.

    Example:
    >>> y = ESpikeFormerLargeAttention(8)(keras.random.normal((2, 1, 4, 4, 64)))
    """

    def __init__(self, num_heads=8, attention_scale=0.125, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.attention_scale = float(attention_scale)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        for name in ("head", "q", "k", "v", "attn"):
            setattr(self, f"{name}_spike", self.sn(f"{name}_spike"))
        for name in PROJECTIONS:
            rep = ESpikeFormerRepConv(
                int(1.5 * channels), neuron_config=self.neuron_config,
                kernel_initializer=init, name=f"{name}_conv", dtype=dtype,
            )  # fmt: skip
            setattr(self, f"{name}_conv", rep)
            setattr(self, f"{name}_bn", BatchNorm(name=f"{name}_bn", dtype=dtype))
            build_all((rep, input_shape), (getattr(self, f"{name}_bn"), input_shape))
        for name in ("head", "q", "k", "v", "attn"):
            getattr(self, f"{name}_spike").build(input_shape)

    def _project(self, name, s, training):
        rep, bn = getattr(self, f"{name}_conv"), getattr(self, f"{name}_bn")
        return bn(rep(s, training=training), training=training)

    def call(self, inputs, training=None):
        s = self.head_spike(inputs)
        q, k, v = (
            split_heads(getattr(self, f"{n}_spike")(self._project(n, s, training)),
                        self.num_heads)
            for n in ("q", "k", "v")
        )  # fmt: skip
        a = merge_heads(linear_attention(q, k, v, self.attention_scale), inputs.shape)
        return self._project("proj", self.attn_spike(a), training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_heads": self.num_heads, "attention_scale": self.attention_scale}
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerLargeBlock(RematMixin, ESpikeFormerLayer):
    """`[x += Rep(SN(x))]; x += g1 * Attention(x); x += g2 * MLP(x)`.

    Args:
        num_heads: int. Defaults to `8`.
        mlp_ratio: float. Defaults to `4.0`.
        drop_path_rate: float, probability of dropping a branch in training,
            drawn once per time step for the whole batch (the reference's
            rule on `[T, B, ...]`). Defaults to `0.0`.
        rep_branch_width: int or `None`: build the 83M rep branch
            (`Conv1d(C->C) -> BN(width) -> Conv1d(C->C) -> BN(C)`) with this
            first-BN width; `None` builds none.
        use_rep_branch: bool, apply the rep branch (needs width `C`).
            Defaults to `False`.
        layer_scale_init: float, initial layer scales. Defaults to `1e-6`.
        neuron_config, kernel_initializer: see `ESpikeFormerLayer`.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (the moving statistics still move
            once per step; the recomputation drops the same paths). Defaults
            to `False`.
        **kwargs: standard layer arguments.

    Example:
    >>> y = ESpikeFormerLargeBlock(8)(keras.random.normal((2, 1, 4, 4, 64)))
    """

    def __init__(self, num_heads=8, mlp_ratio=4.0, drop_path_rate=0.0,
                 rep_branch_width=None, use_rep_branch=False, layer_scale_init=1e-6,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.drop_path_rate = float(drop_path_rate)
        self.rep_branch_width = (
            None if rep_branch_width is None else int(rep_branch_width)
        )
        self.use_rep_branch = bool(use_rep_branch)
        self.layer_scale_init = float(layer_scale_init)
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.use_rep_branch and self.rep_branch_width != channels:
            raise ValueError(
                f"`use_rep_branch=True` needs rep_branch_width={channels} (the block "
                f"width); got {self.rep_branch_width}. The released 83M files declare a "
                "BN wider than the branch's conv, so their branch cannot run: keep "
                "use_rep_branch=False for them."
            )
        common = {
            "neuron_config": self.neuron_config,
            "kernel_initializer": self.kernel_initializer,
            "dtype": self.dtype_policy,
        }
        self.spike = self.sn("spike")  # the reference builds it for every block
        self.rep_conv = None
        if self.rep_branch_width is not None:
            self.rep_conv = ESpikeFormerRepConv(
                channels,
                inner_bn_width=self.rep_branch_width,
                name="rep_conv",
                **common,
            )
            self.rep_conv.build(input_shape)
        self.attn = ESpikeFormerLargeAttention(self.num_heads, name="attn", **common)
        self.mlp = ESpikeFormerMLP(self.mlp_ratio, name="mlp", **common)
        build_all(
            (self.spike, input_shape), (self.attn, input_shape), (self.mlp, input_shape)
        )
        init = keras.initializers.Constant(self.layer_scale_init)
        self.layer_scale1 = self.add_weight((channels,), init, name="layer_scale1")
        self.layer_scale2 = self.add_weight((channels,), init, name="layer_scale2")

    def _drop_path(self, x, training):
        if not training or self.drop_path_rate == 0.0:
            return x
        keep = 1.0 - self.drop_path_rate
        shape = (1, x.shape[1]) + (1,) * (len(x.shape) - 2)
        draw = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        return x * ops.cast(draw < keep, x.dtype) / keep

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        x = inputs
        if self.use_rep_branch:
            x = x + self.rep_conv(self.spike(x), training=training)
        g1 = ops.cast(self.layer_scale1, x.dtype)
        g2 = ops.cast(self.layer_scale2, x.dtype)
        x = x + self._drop_path(g1 * self.attn(x, training=training), training)
        return x + self._drop_path(g2 * self.mlp(x, training=training), training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "drop_path_rate": self.drop_path_rate,
                "rep_branch_width": self.rep_branch_width,
                "use_rep_branch": self.use_rep_branch,
                "layer_scale_init": self.layer_scale_init,
            }
        )
        return config
