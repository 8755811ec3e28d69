"""Meta-SpikeFormer transformer block: linear spike-driven attention on RepConv projections, MLP."""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.layers.time_folding import fold_time, folded_shape, unfold_time
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_layers import (
    _SpikingBlockBase,
    neuron,
    time_shape,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_repconv import (
    MetaSpikeFormerRepConv,
    fresh,
)

PROJECTIONS = ("q", "k", "v")


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerAttention(_SpikingBlockBase):
    """Linear spike-driven self-attention with RepConv projections.

    ```
    s = LIF(x);  Q, K, V = LIF(BN(RepConv(s)))          # each RepConv ends in its own BN
    Y = LIF_{v_th=0.5}(scale * Q (K^T V))               # per head, linear in tokens
    out = BN(RepConv(Y))                                # no neuron on the output
    ```

    Args:
        num_heads: int, heads (the channels must divide by it). Defaults to `8`.
        attention_scale: float, scale of `Q K^T V`. Defaults to `0.125`.
        attention_v_threshold: float, threshold of the attention neuron.
            Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments.
        kernel_initializer: initializer of the convolutions.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]`; output the same
    (the branch, before the residual add).

    Example:
    >>> y = MetaSpikeFormerAttention(num_heads=8)(keras.random.normal((2, 4, 14, 14, 64)))
    """

    def __init__(self, num_heads=8, attention_scale=0.125, attention_v_threshold=0.5,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.attention_scale = float(attention_scale)
        self.attention_v_threshold = float(attention_v_threshold)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        if channels % self.num_heads:
            raise ValueError(
                f"{self.name}: {channels} channels do not split into "
                f"{self.num_heads} heads; use a width divisible by num_heads."
            )
        folded = folded_shape(input_shape)
        self.head_lif = neuron("head_lif", self.neuron_config, dtype)
        self.head_lif.build(input_shape)
        for name in PROJECTIONS + ("proj",):
            conv = MetaSpikeFormerRepConv(
                channels, init, name=f"{name}_conv", dtype=dtype
            )
            conv.build(folded)
            bn = BatchNorm(name=f"{name}_bn", dtype=dtype)
            bn.build(folded)
            setattr(self, f"{name}_conv", conv)
            setattr(self, f"{name}_bn", bn)
        for name in PROJECTIONS:
            lif = neuron(f"{name}_lif", self.neuron_config, dtype)
            lif.build(input_shape)
            setattr(self, f"{name}_lif", lif)
        b, t, h, w, c = input_shape
        self.attn_lif = neuron(
            "attn_lif",
            self.neuron_config,
            dtype,
            v_threshold=self.attention_v_threshold,
        )
        self.attn_lif.build((b, t, None if h is None or w is None else h * w, c))

    def _heads(self, spikes):
        """`[B, T, H, W, C]` -> `[B, T, heads, H*W, C/heads]`."""
        b, t, h, w, c = spikes.shape
        x = ops.reshape(spikes, (-1, t, h * w, self.num_heads, c // self.num_heads))
        return ops.transpose(x, (0, 1, 3, 2, 4))

    def call(self, inputs, training=None):
        _, steps, height, width, channels = inputs.shape
        s = fold_time(self.head_lif(inputs))
        qkv = []
        for name in PROJECTIONS:
            x = getattr(self, f"{name}_conv")(s, training=training)
            x = getattr(self, f"{name}_bn")(x, training=training)
            qkv.append(self._heads(getattr(self, f"{name}_lif")(unfold_time(x, steps))))
        q, k, v = qkv
        kv = ops.matmul(ops.swapaxes(k, -1, -2), v)  # [B, T, heads, d, d]
        x = ops.matmul(q, kv) * self.attention_scale  # [B, T, heads, N, d]
        x = ops.reshape(
            ops.transpose(x, (0, 1, 3, 2, 4)), (-1, steps, height * width, channels)
        )
        x = self.attn_lif(x)
        x = ops.reshape(x, (-1, height, width, channels))
        x = self.proj_bn(self.proj_conv(x, training=training), training=training)
        return unfold_time(x, steps)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "attention_scale": self.attention_scale,
                "attention_v_threshold": self.attention_v_threshold,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerMLP(_SpikingBlockBase):
    """Channel MLP: LIF -> Dense (bias) -> BN -> LIF -> Dense (bias) -> BN.

    Args:
        mlp_ratio: float, hidden width over input width. Defaults to `4.0`.
        neuron_config: dict of `LIFNeuron` arguments.
        kernel_initializer: initializer of the dense kernels.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]`; output the same
    (the branch, before the residual add).

    Example:
    >>> y = MetaSpikeFormerMLP()(keras.random.normal((2, 4, 14, 14, 64)))
    """

    def __init__(self, mlp_ratio=4.0, **kwargs):
        super().__init__(**kwargs)
        self.mlp_ratio = float(mlp_ratio)

    def build(self, input_shape):
        channels, dtype, init = (
            input_shape[-1],
            self.dtype_policy,
            self.kernel_initializer,
        )
        hidden = int(channels * self.mlp_ratio)
        self.fc1_lif = neuron("fc1_lif", self.neuron_config, dtype)
        self.fc1 = keras.layers.Dense(
            hidden, kernel_initializer=fresh(init), name="fc1", dtype=dtype
        )
        self.fc1_bn = BatchNorm(name="fc1_bn", dtype=dtype)
        self.fc2_lif = neuron("fc2_lif", self.neuron_config, dtype)
        self.fc2 = keras.layers.Dense(
            channels, kernel_initializer=fresh(init), name="fc2", dtype=dtype
        )
        self.fc2_bn = BatchNorm(name="fc2_bn", dtype=dtype)
        folded = folded_shape(input_shape)
        self.fc1_lif.build(input_shape)
        self.fc1.build(folded)
        hidden_shape = self.fc1.compute_output_shape(folded)
        self.fc1_bn.build(hidden_shape)
        self.fc2_lif.build(time_shape(input_shape, hidden_shape))
        self.fc2.build(hidden_shape)
        self.fc2_bn.build(folded)

    def call(self, inputs, training=None):
        steps = inputs.shape[1]
        x = self.fc1_bn(self.fc1(fold_time(self.fc1_lif(inputs))), training=training)
        x = fold_time(self.fc2_lif(unfold_time(x, steps)))
        x = self.fc2_bn(self.fc2(x), training=training)
        return unfold_time(x, steps)

    def get_config(self):
        config = super().get_config()
        config["mlp_ratio"] = self.mlp_ratio
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerBlock(RematMixin, _SpikingBlockBase):
    """Transformer-based spiking block: `x + Attn(x)`, then `+ MLP(x)` (membrane shortcuts).

    Args:
        num_heads: int, attention heads. Defaults to `8`.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        attention_scale, attention_v_threshold: see `MetaSpikeFormerAttention`.
        neuron_config: dict of `LIFNeuron` arguments.
        kernel_initializer: initializer of every convolution and of the MLP's
            dense layers (the reference's 1x1 `Conv1d`). Defaults to PyTorch's
            conv default.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]`; output the same.

    Example:
    >>> y = MetaSpikeFormerBlock(num_heads=8)(keras.random.normal((2, 4, 14, 14, 64)))
    """

    def __init__(self, num_heads=8, mlp_ratio=4.0, attention_scale=0.125,
                 attention_v_threshold=0.5, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.attention_scale = float(attention_scale)
        self.attention_v_threshold = float(attention_v_threshold)

    def build(self, input_shape):
        common = {
            "neuron_config": self.neuron_config,
            "kernel_initializer": self.kernel_initializer,
            "dtype": self.dtype_policy,
        }
        self.attn = MetaSpikeFormerAttention(
            self.num_heads, self.attention_scale, self.attention_v_threshold,
            name="attn", **common,
        )  # fmt: skip
        self.mlp = MetaSpikeFormerMLP(self.mlp_ratio, name="mlp", **common)
        self.attn.build(input_shape)
        self.mlp.build(input_shape)

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        x = inputs + self.attn(inputs, training=training)
        return x + self.mlp(x, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "attention_scale": self.attention_scale,
                "attention_v_threshold": self.attention_v_threshold,
            }
        )
        return config
