"""Spike-driven self-attention (SDSA) and the DVS `Erode` of the Spike-driven Transformer."""

import keras
from keras import ops

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.spiking_units import (
    TORCH_DEFAULT_INIT,
    TRUNC_NORMAL_INIT,
    SpikingDense,
)
from keras_spikformer.layers.time_folding import fold_time, unfold_time
from keras_spikformer.neurons import LIFNeuron

_WINDOW = [(di, dj) for di in range(3) for dj in range(3)]


def max_pool_3x3_s1(x):
    """3x3 max pooling, stride 1, padding 1 (`-inf`), channels last.

    Equal to PyTorch's `MaxPool2d(3, 1, 1)` (and `MaxPool3d((1, 3, 3), 1,
    (0, 1, 1))` per depth slice) forward and backward: where a window holds
    several maxima the gradient goes to the first in row-major order, as
    PyTorch's argmax does.

    Args:
        x: tensor `[batch, height, width, channels]`.

    Returns:
        Tensor of the same shape.

    Example:
    >>> y = max_pool_3x3_s1(keras.random.uniform((2, 8, 8, 16)))  # (2, 8, 8, 16)
    """
    _, height, width, _ = x.shape
    padding = ((0, 0), (1, 1), (1, 1), (0, 0))

    @ops.custom_gradient
    def pool(x):
        padded = ops.pad(x, padding, constant_values=float("-inf"))
        views = [padded[:, di : di + height, dj : dj + width, :] for di, dj in _WINDOW]
        outputs = views[0]
        for view in views[1:]:
            outputs = ops.maximum(outputs, view)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            zeros = ops.zeros_like(upstream)
            total, taken = None, None
            for (di, dj), view in zip(_WINDOW, views, strict=True):
                hit = ops.equal(view, outputs)
                first = (
                    hit
                    if taken is None
                    else ops.logical_and(hit, ops.logical_not(taken))
                )
                taken = hit if taken is None else ops.logical_or(taken, hit)
                part = ops.where(first, upstream, zeros)
                # view[i, j] is padded[i + di, j + dj]: shift back into place.
                part = ops.pad(part, ((0, 0), (di, 2 - di), (dj, 2 - dj), (0, 0)))
                total = part if total is None else total + part
            return total[:, 1 : height + 1, 1 : width + 1, :]

        return outputs, grad

    return pool(x)


def erode_heads(x, num_heads):
    """The reference's `Erode` on a head-split tensor: a 3x3 max over (token, channel).

    The reference applies `MaxPool3d((1, 3, 3))` to `[T, B, heads, N, d]`, i.e.
    a 3x3 window over the token index and the in-head channel index of each
    head. Here `x` is `[batch, time, height, width, channels]` with channels
    head-major; tokens are the row-major grid positions.

    Args:
        x: tensor `[batch, time, height, width, heads * d]`.
        num_heads: int.

    Returns:
        Tensor of the same shape.
    """
    batch_time_shape = tuple(x.shape)
    num_timesteps, height, width, channels = batch_time_shape[1:]
    head_dim = channels // num_heads
    tokens = height * width
    # [B*T, N, heads, d] -> [B*T, N, d, heads]: heads become image channels.
    planes = ops.reshape(fold_time(x), (-1, tokens, num_heads, head_dim))
    planes = max_pool_3x3_s1(ops.transpose(planes, (0, 1, 3, 2)))
    planes = ops.transpose(planes, (0, 1, 3, 2))
    return unfold_time(
        ops.reshape(planes, (-1, height, width, channels)), num_timesteps
    )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class Erode(keras.layers.Layer):
    """3x3 spatial max (stride 1, `-inf` padding) of every channel and time step.

    The dilation of spike maps that the Spike-driven Transformer applies to
    k and v on CIFAR10-DVS (the reference's `Erode`, `MaxPool3d((1, 3, 3))`).
    Gradients follow PyTorch's first-maximum rule.

    Args:
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, height, width, channels]`.

    Example:
    >>> y = Erode()(keras.random.uniform((2, 4, 16, 16, 32)) > 0.9)

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def call(self, inputs):
        return unfold_time(max_pool_3x3_s1(fold_time(inputs)), inputs.shape[1])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenSelfAttention(keras.layers.Layer):
    """Spike-driven self-attention branch of a membrane-shortcut block.

    ```
    s = LIF(u)                                   # shortcut_lif, u: membrane
    q, k, v = LIF(BN(Conv1x1(s)))                # no bias, binary
    mask = LIF_0.5(sum over tokens of k * v)     # talking_heads_lif, per channel
    y = q * mask                                 # SDSA, binary
    return BN(Conv1x1(y))                        # proj (bias) -> proj_bn, no LIF
    ```

    The branch output is real valued; the block adds it to `u`. With
    `erode=True` (CIFAR10-DVS) k and v are dilated by a 3x3 spatial max, and
    `k * v` and `y` by a 3x3 max over (token, in-head channel) per head, as
    the reference does. The reference's `talking_heads` 1x1 Conv1d weight is
    created (`(1, heads, heads)`, trainable) so that parameter counts and
    checkpoints match, but, as in the reference, it is never applied and
    receives no gradient.

    Args:
        hidden_dim: int, channels `D`, divisible by `num_heads`.
        num_heads: int, heads (channel `c` is in head `c // (D / num_heads)`).
        erode: bool, the CIFAR10-DVS dilations. Defaults to `False`.
        attention_v_threshold: float, threshold of the mask neuron. Defaults
            to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments for every neuron.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, height, width, hidden_dim]`.

    Example:
    >>> sdsa = SpikeDrivenSelfAttention(hidden_dim=64, num_heads=8)
    >>> a = sdsa(keras.random.normal((2, 4, 8, 8, 64)))

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        erode=False,
        attention_v_threshold=0.5,
        neuron_config=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(hidden_dim) % int(num_heads):
            raise ValueError(
                f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` "
                f"({num_heads}); pick num_heads among the divisors of hidden_dim."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.erode = bool(erode)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})

    def build(self, input_shape):
        policy = self.dtype_policy
        self.shortcut_lif = LIFNeuron(
            **self.neuron_config, name="shortcut_lif", dtype=policy
        )
        self.shortcut_lif.build(input_shape)
        for name in ("q", "k", "v"):
            unit = SpikingDense(
                self.hidden_dim,
                use_bias=False,
                neuron_config=self.neuron_config,
                kernel_initializer=TRUNC_NORMAL_INIT,
                name=name,
                dtype=policy,
            )
            unit.build(input_shape)
            setattr(self, name, unit)
        # Built but never applied (as in the reference): parameter parity.
        self.talking_heads = self.add_weight(
            name="talking_heads",
            shape=(1, self.num_heads, self.num_heads),
            initializer=keras.initializers.get(TORCH_DEFAULT_INIT),
            trainable=True,
        )
        mask_config = {**self.neuron_config, "v_threshold": self.attention_v_threshold}
        self.talking_heads_lif = LIFNeuron(
            **mask_config, name="talking_heads_lif", dtype=policy
        )
        self.talking_heads_lif.build(tuple(input_shape[:2]) + (self.hidden_dim,))
        self.proj = keras.layers.Dense(
            self.hidden_dim,
            kernel_initializer=TRUNC_NORMAL_INIT,
            name="proj",
            dtype=policy,
        )
        self.proj.build(input_shape)
        self.proj_bn = BatchNorm(name="proj_bn", dtype=policy)
        self.proj_bn.build(tuple(input_shape[:-1]) + (self.hidden_dim,))

    def call(self, inputs, training=None):
        spikes = self.shortcut_lif(inputs)
        q = self.q(spikes, training=training)
        k = self.k(spikes, training=training)
        v = self.v(spikes, training=training)
        if self.erode:
            k = unfold_time(max_pool_3x3_s1(fold_time(k)), k.shape[1])
            v = unfold_time(max_pool_3x3_s1(fold_time(v)), v.shape[1])
        kv = k * v
        if self.erode:
            kv = erode_heads(kv, self.num_heads)
        # Integer counts up to the token count: summed in float32 (exact).
        counts = ops.sum(ops.cast(kv, "float32"), axis=(2, 3))
        mask = self.talking_heads_lif(counts)  # [batch, time, channels]
        y = q * mask[:, :, None, None, :]
        if self.erode:
            y = erode_heads(y, self.num_heads)
        return self.proj_bn(self.proj(y), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "erode": self.erode,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
            }
        )
        return config
