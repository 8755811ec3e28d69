"""QKFormer layers: spiking conv units, the two patch-embedding modules, the block."""

import keras
from keras import ops

from keras_spikformer.layers import SpikingMLP
from keras_spikformer.layers.max_pool import max_pool_3x3_s2
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT, SpikingUnit
from keras_spikformer.layers.time_folding import fold_time, folded_shape, unfold_time
from keras_spikformer.models.qkformer.qkformer_attention import (
    QKFormerSelfAttention,
    QKTokenAttention,
)

FLAVOURS = ("imagenet", "cifar", "dvs")


def _check_flavour(flavour):
    if flavour not in FLAVOURS:
        raise ValueError(f"`flavour` must be one of {FLAVOURS}; got {flavour!r}.")


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerConvUnit(SpikingUnit):
    """Conv2D (no bias) -> BatchNorm -> [MaxPool(3, 2, 1)] -> LIF at every step.

    The optional max pool acts on the real-valued batch-norm output with
    `-inf` padding (PyTorch's `MaxPool2d(3, 2, 1)`), before the neuron.

    Args:
        filters: int, output channels.
        kernel_size: int, 3 (padding 1) or 1 (no padding). Defaults to `3`.
        strides: int, convolution stride. Defaults to `1`.
        pool: bool, max-pool the batch-norm output. Defaults to `False`.
        **kwargs: `SpikingUnit` arguments (`neuron_config`, `kernel_initializer`,
            `name`, `dtype`).

    Input shape: `[batch, time, height, width, channels]`, or static
    `[batch, height, width, channels]` when called with `num_timesteps`.

    Example:
    >>> unit = QKFormerConvUnit(48, pool=True)
    >>> spikes = unit(keras.random.normal((2, 4, 32, 32, 3)))  # (2, 4, 16, 16, 48)
    """

    default_initializer = TORCH_DEFAULT_INIT

    def __init__(self, filters, kernel_size=3, strides=1, pool=False, **kwargs):
        super().__init__(**kwargs)
        if int(kernel_size) not in (1, 3):
            raise ValueError(f"`kernel_size` must be 1 or 3; got {kernel_size}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.pool = bool(pool)

    def make_synapse(self):
        return keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same" if self.kernel_size == 3 else "valid",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="conv",
            dtype=self.dtype_policy,
        )

    def _bn_pool(self, x, training):
        x = self.bn(self.synapse(x), training=training)
        return max_pool_3x3_s2(x) if self.pool else x

    def call(self, inputs, training=None, num_timesteps=None):
        if num_timesteps is not None:  # static images, the same at every step
            x = self._bn_pool(inputs, training)
            return self.lif(ops.repeat(ops.expand_dims(x, 1), num_timesteps, axis=1))
        x = self._bn_pool(fold_time(inputs), training)
        return self.lif(unfold_time(x, inputs.shape[1]))

    def compute_output_shape(self, input_shape):
        out = self.synapse.compute_output_shape(folded_shape(input_shape))
        if self.pool:
            out = (out[0], (out[1] + 1) // 2, (out[2] + 1) // 2, out[3])
        return tuple(input_shape[:2]) + tuple(out[1:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "pool": self.pool,
            }
        )
        return config


class _TwoPathEmbedding(RematMixin, keras.layers.Layer):
    """Main path of conv units plus a strided 1x1 shortcut; outputs their sum.

    With `remat`, each conv unit is recomputed in the backward pass.
    """

    def __init__(self, hidden_dim, flavour="imagenet", neuron_config=None, **kwargs):
        super().__init__(**kwargs)
        _check_flavour(flavour)
        self.hidden_dim = int(hidden_dim)
        self.flavour = flavour
        self.neuron_config = dict(neuron_config or {})

    def _unit(self, name, filters, **options):
        return QKFormerConvUnit(
            filters, neuron_config=self.neuron_config, name=name,
            dtype=self.dtype_policy, **options,
        )  # fmt: skip

    def _build_units(self, shape, main, shortcut_from, shortcut_stride):
        """Builds `main` (list of (filters, pool)) and the shortcut."""
        self.units = []
        shapes = [tuple(shape)]
        for i, (filters, pool) in enumerate(main):
            unit = self._unit(f"conv{i}", filters, pool=pool)
            unit.build(shapes[-1])
            shapes.append(unit.compute_output_shape(shapes[-1]))
            self.units.append(unit)
        self.shortcut_from = shortcut_from
        self.shortcut = self._unit(
            "shortcut", self.hidden_dim, kernel_size=1, strides=shortcut_stride
        )
        self.shortcut.build(shapes[shortcut_from])
        if self.shortcut.compute_output_shape(shapes[shortcut_from]) != shapes[-1]:
            raise ValueError(
                f"{self.name}: the shortcut and main path disagree for input "
                f"{tuple(shape)}; image sizes must be divisible by the stem's "
                "down-sampling factor."
            )

    def call(self, inputs, training=None, num_timesteps=None):
        x, taps = inputs, [inputs]
        for i, unit in enumerate(self.units):
            steps = num_timesteps if i == 0 else None

            def run(x, training, unit=unit, steps=steps):
                return unit(x, training=training, num_timesteps=steps)

            x = self.remat_call(run, x, training=training)
            taps.append(x)
        shortcut = self.remat_call(
            self.shortcut, taps[self.shortcut_from], training=training
        )
        return x + shortcut

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "flavour": self.flavour,
                "neuron_config": self.neuron_config,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerPatchEmbedding(_TwoPathEmbedding):
    """QKFormer's first patch embedding (`PatchEmbedInit`), per flavour.

    With `E = hidden_dim` (pools act on batch-norm outputs, before the LIF):
    - `"imagenet"` (down-samples 4x): `s = U(E/2, pool)`, `a = U(E)(U(E, pool)(s))`.
    - `"cifar"` (no down-sampling): `s = U(E/2)`, `a = U(E)(s)`.
    - `"dvs"` (8x): `s = U(E/4, pool)(U(E/8))`, `a = U(E, pool)(U(E/2, pool)(s))`.
    The output is `a + LIF(BN(Conv1x1 stride r (s)))` with `r` matching `a`'s
    grid (2, 1, 4), values in {0, 1, 2}.

    Args:
        hidden_dim: int, output channels `E` (divisible by 2, by 8 for "dvs").
        flavour: `"imagenet"`, `"cifar"` or `"dvs"`.
        neuron_config: dict of `LIFNeuron` arguments.
        num_timesteps: int or `None`: when set, takes static images
            `[batch, H, W, C]` and repeats them over time after the first
            batch norm (same outputs as repeating the input).
        remat: bool, in training recompute each conv unit in the backward
            pass, keeping only the spikes between units. Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, H, W, C]` (or static images, see above).
    Output shape: `[batch, time, H / f, W / f, E]`, `f` = 4, 1, 8.

    Example:
    >>> stem = QKFormerPatchEmbedding(96, flavour="imagenet", num_timesteps=4)
    >>> x = stem(keras.random.normal((2, 224, 224, 3)))  # (2, 4, 56, 56, 96)
    """

    DOWNSAMPLING = {"imagenet": 4, "cifar": 1, "dvs": 8}

    def __init__(self, hidden_dim, flavour="imagenet", num_timesteps=None, **kwargs):
        super().__init__(hidden_dim, flavour=flavour, **kwargs)
        self.num_timesteps = None if num_timesteps is None else int(num_timesteps)

    def _sequence_shape(self, shape):
        if len(shape) == 4 and self.num_timesteps:
            return (shape[0], self.num_timesteps) + tuple(shape[1:])
        return tuple(shape)

    def build(self, input_shape):
        e = self.hidden_dim
        if self.flavour == "imagenet":
            main, tap, stride = [(e // 2, True), (e, True), (e, False)], 1, 2
        elif self.flavour == "cifar":
            main, tap, stride = [(e // 2, False), (e, False)], 1, 1
        else:
            main = [(e // 8, False), (e // 4, True), (e // 2, True), (e, True)]
            tap, stride = 2, 4
        self._build_units(self._sequence_shape(input_shape), main, tap, stride)

    def call(self, inputs, training=None):
        static = len(inputs.shape) == 4
        return super().call(
            inputs,
            training=training,
            num_timesteps=self.num_timesteps if static else None,
        )

    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = self._sequence_shape(input_shape)
        f = self.DOWNSAMPLING[self.flavour]
        return (b, t, -(-h // f), -(-w // f), self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config["num_timesteps"] = self.num_timesteps
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerDownsampling(_TwoPathEmbedding):
    """QKFormer's patch embedding between stages (`PatchEmbeddingStage`).

    Halves the grid and doubles the channels (`E/2 -> E`). Main path: ImageNet
    `U(E)(U(E, pool)(x))`, CIFAR/DVS `U(E, pool)(U(E)(x))` (the pool acts on the
    second batch-norm output); shortcut `LIF(BN(Conv1x1 stride 2 (x)))` on the
    block input itself. Output: main + shortcut.

    Args:
        hidden_dim: int, output channels `E`.
        flavour: `"imagenet"`, `"cifar"` or `"dvs"`.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute each conv unit in the backward
            pass, keeping only the spikes between units. Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, H, W, E/2]`; output `[batch, time, H/2, W/2, E]`.

    Example:
    >>> down = QKFormerDownsampling(192, flavour="imagenet")
    >>> x = down(keras.random.normal((2, 4, 56, 56, 96)))  # (2, 4, 28, 28, 192)
    """

    def build(self, input_shape):
        first_pools = self.flavour == "imagenet"
        main = [(self.hidden_dim, first_pools), (self.hidden_dim, not first_pools)]
        self._build_units(input_shape, main, 0, 2)

    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = input_shape
        return (b, t, (h + 1) // 2, (w + 1) // 2, self.hidden_dim)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerBlock(RematMixin, keras.layers.Layer):
    """`x = x + Attention(x); x = x + MLP(x)` with spike-sum residuals.

    `attention="token"`: Q-K token attention (stages 1-2); `attention="self"`:
    QKFormer's spiking self-attention (last stage). The MLP is two spiking
    1x1 units (`SpikingMLP`). No LayerNorm.

    Args:
        hidden_dim: int, channels.
        num_heads: int, heads; must divide `hidden_dim`.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        attention: `"token"` or `"self"`. Defaults to `"token"`.
        batch_spanning_projection: bool, see `QKFormerSelfAttention`.
            Defaults to `True`.
        attention_v_threshold: float, attention neuron threshold. Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, height, width, hidden_dim]`.

    Example:
    >>> block = QKFormerBlock(96, num_heads=6)
    >>> y = block(keras.random.uniform((2, 4, 14, 14, 96)) > 0.8)
    """

    def __init__(
        self, hidden_dim, num_heads, mlp_ratio=4.0, attention="token",
        batch_spanning_projection=True, attention_v_threshold=0.5,
        neuron_config=None, **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        if attention not in ("token", "self"):
            raise ValueError(
                f"`attention` must be 'token' or 'self'; got {attention!r}."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.attention = attention
        self.batch_spanning_projection = bool(batch_spanning_projection)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})

    def _token_shape(self, shape):
        return (shape[0], shape[1], shape[2] * shape[3], shape[4])

    def build(self, input_shape):
        common = {
            "attention_v_threshold": self.attention_v_threshold,
            "neuron_config": self.neuron_config,
            "name": "attn",
            "dtype": self.dtype_policy,
        }
        if self.attention == "token":
            self.attn = QKTokenAttention(self.hidden_dim, self.num_heads, **common)
            self.attn.build(input_shape)
        else:
            self.attn = QKFormerSelfAttention(
                self.hidden_dim, self.num_heads,
                batch_spanning_projection=self.batch_spanning_projection, **common,
            )  # fmt: skip
            self.attn.build(self._token_shape(input_shape))
        self.mlp = SpikingMLP(
            self.hidden_dim, self.mlp_ratio, neuron_config=self.neuron_config,
            name="mlp", dtype=self.dtype_policy,
        )  # fmt: skip
        self.mlp.build(input_shape)

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        if self.attention == "token":
            x = inputs + self.attn(inputs, training=training)
        else:
            _, t, h, w, c = inputs.shape
            tokens = ops.reshape(inputs, (-1, t, h * w, c))
            x = inputs + ops.reshape(
                self.attn(tokens, training=training), (-1, t, h, w, c)
            )
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
                "attention": self.attention,
                "batch_spanning_projection": self.batch_spanning_projection,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
            }
        )
        return config
