"""Max-Former / MS-QKFormer patch embeddings, attention and blocks (membrane shortcuts)."""

import keras
from keras import ops

from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.models.maxformer.maxformer_attention import (
    MembraneSelfAttention,
    MembraneTokenAttention,
)
from keras_spikformer.models.maxformer.maxformer_units import MembraneUnit
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_layers import (
    SpikeDrivenMLP,
)

VARIANTS = ("maxformer", "ms_qkformer")
FLAVOURS = ("imagenet", "cifar", "dvs")
MIXERS = ("dwc7", "dwc5", "dwc3", "ssa", "qka", "none")


def _check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}; got {variant!r}.")


def _check_flavour(flavour):
    if flavour not in FLAVOURS:
        raise ValueError(f"`flavour` must be one of {FLAVOURS}; got {flavour!r}.")


class _Embedding(RematMixin, keras.layers.Layer):
    """Shared config and unit factory of the two patch embeddings.

    With `remat`, each unit's input neuron and each unit's synapse (conv, batch
    norm, pool) is recomputed in the backward pass (`_step`).
    """

    def __init__(
        self, hidden_dim, variant="maxformer", flavour="imagenet", neuron_config=None,
        **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        _check_variant(variant)
        _check_flavour(flavour)
        self.hidden_dim = int(hidden_dim)
        self.variant = variant
        self.flavour = flavour
        self.neuron_config = dict(neuron_config or {})

    def _unit(self, name, filters, shape, **options):
        unit = MembraneUnit(
            filters, neuron_config=self.neuron_config, name=name,
            dtype=self.dtype_policy, **options,
        )  # fmt: skip
        unit.build(shape)
        return unit, unit.compute_output_shape(shape)

    def _step(self, run, x, training):
        """`run(x, training)`, recomputed in the backward pass with `remat`."""
        return self.remat_call(run, x, training=training)

    def _fire(self, unit, x, training):
        """`unit.fire(x)` (its input neuron) as a step."""
        return self._step(lambda s, training: unit.fire(s), x, training)

    def _synapse(self, unit, x, training):
        """`unit.apply_synapse(x)` as a step."""
        return self._step(unit.apply_synapse, x, training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "variant": self.variant,
                "flavour": self.flavour,
                "neuron_config": self.neuron_config,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MaxFormerPatchEmbedding(_Embedding):
    """The stem (ImageNet 4x down-sampling, CIFAR none), real-valued output.

    With `E = hidden_dim` and `U` a `MembraneUnit` (`[LIF] -> conv -> BN -> [pool]`):
    ```
    a  = U0(x)                       # conv 3x3 (3 -> E/2), no input LIF
    s1 = LIF(a)                      # conv1's input neuron
    a  = U2(U1.synapse(s1))          # conv 3x3 (E/2 -> E), then LIF -> conv 3x3 (E -> E)
    out = a + U_shortcut(s1)         # conv 1x1 stride 2 (E/2 -> E) on the spikes s1
    ```
    `variant="maxformer"` (`Embed_Orig_ImageNet`): U0 and U1 have stride 2
    (symmetric padding), no pools. `"ms_qkformer"` (`PatchEmbedInit`): stride 1
    with a 3x3/2 max pool after U0's and U1's batch norms. `flavour="cifar"`
    (`Embed_Orig`, both families): stride 1, no pool, no U2, and a stride-1
    shortcut: `out = U1.synapse(s1) + U_shortcut(s1)` (the reference runs two
    identical neurons on `a`; one gives the same spikes). `flavour="dvs"`
    (`Embed_Max_plus`, Max-Former's event model, 8x): a conv (E/8), then three
    `LIF -> conv -> BN -> pool` units (E/4, E/2, E) plus a 1x1 stride-4
    shortcut on the second unit's input spikes.

    Args:
        hidden_dim: int, output channels `E` (even).
        variant: `"maxformer"` or `"ms_qkformer"`.
        flavour: `"imagenet"` or `"cifar"`. Defaults to `"imagenet"`.
        num_timesteps: int or `None`: when set, takes static images
            `[batch, H, W, C]`; U0 runs once and is repeated over time.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute each unit's input neuron and
            synapse in the backward pass, keeping only the tensors between
            them. Defaults to `False`.
        **kwargs: standard layer arguments.

    Output shape: `[batch, time, H/4, W/4, E]` (CIFAR: `H, W`).

    Example:
    >>> stem = MaxFormerPatchEmbedding(96, num_timesteps=4)
    >>> u = stem(keras.random.normal((2, 224, 224, 3)))  # (2, 4, 56, 56, 96)
    """

    def __init__(self, hidden_dim, num_timesteps=None, **kwargs):
        super().__init__(hidden_dim, **kwargs)
        self.num_timesteps = None if num_timesteps is None else int(num_timesteps)

    def _build_dvs(self, input_shape):
        """`Embed_Max_plus`: conv, three max-pooled units, a stride-4 shortcut."""
        e, shape = self.hidden_dim, tuple(input_shape)
        self.conv0, shape = self._unit("conv0", e // 8, shape, fire_input=False)
        self.units, taps = [], []
        for i, width in enumerate((e // 4, e // 2, e), start=1):
            taps.append(shape)
            unit, shape = self._unit(f"conv{i}", width, shape, pool=True)
            self.units.append(unit)
        self.shortcut, _ = self._unit(
            "shortcut", e, taps[1], kernel_size=1, strides=4, fire_input=False
        )

    def build(self, input_shape):
        if self.flavour == "dvs":
            return self._build_dvs(input_shape)
        e = self.hidden_dim
        cifar = self.flavour == "cifar"
        pooled = self.variant == "ms_qkformer" and not cifar
        stride = 1 if pooled or cifar else 2
        self.conv0, shape = self._unit(
            "conv0",
            e // 2,
            tuple(input_shape),
            strides=stride,
            fire_input=False,
            pool=pooled,
        )
        if len(input_shape) == 4:
            shape = (shape[0], self.num_timesteps) + tuple(shape[2:])
        self.conv1, out = self._unit("conv1", e, shape, strides=stride, pool=pooled)
        if not cifar:
            self.conv2, out = self._unit("conv2", e, out)
        self.shortcut, short = self._unit(
            "shortcut", e, shape, kernel_size=1, strides=1 if cifar else 2,
            fire_input=False,
        )  # fmt: skip
        if tuple(short[2:4]) != tuple(out[2:4]):
            raise ValueError(
                f"{self.name}: image size {tuple(input_shape)} gives a shortcut grid "
                f"{short[2:4]} and a main grid {out[2:4]}; use sizes divisible by 16."
            )

    def _call_dvs(self, inputs, training):
        a = self._step(self.conv0, inputs, training)
        a = self._step(self.units[0], a, training)
        s = self._fire(self.units[1], a, training)
        a = self._step(
            self.units[2], self._synapse(self.units[1], s, training), training
        )
        return a + self._synapse(self.shortcut, s, training)

    def call(self, inputs, training=None):
        if self.flavour == "dvs":
            return self._call_dvs(inputs, training)
        steps = self.num_timesteps if len(inputs.shape) == 4 else None

        def conv0(x, training):
            return self.conv0(x, training=training, num_timesteps=steps)

        a = self._step(conv0, inputs, training)
        s1 = self._fire(self.conv1, a, training)
        a = self._synapse(self.conv1, s1, training)
        if self.flavour != "cifar":
            a = self._step(self.conv2, a, training)
        return a + self._synapse(self.shortcut, s1, training)

    def compute_output_shape(self, input_shape):
        b, h, w = input_shape[0], input_shape[-3], input_shape[-2]
        t = self.num_timesteps if len(input_shape) == 4 else input_shape[1]
        f = {"cifar": 1, "dvs": 8}.get(self.flavour, 4)
        return (b, t, -(-h // f), -(-w // f), self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config["num_timesteps"] = self.num_timesteps
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MaxFormerDownsampling(_Embedding):
    """Stage embedding (`E/2 -> E`, halves the grid), real-valued output.

    ```
    s  = LIF(u)                          # conv0's input neuron
    a  = U1(Pool(BN(Conv3x3(s))))        # U1: LIF -> conv 3x3 (E -> E) -> BN
    out = a + shortcut(s)
    ```
    Shortcut: `variant="maxformer"` (`Embed_Max`): `Pool(BN(Conv1x1 stride 1 (s)))`;
    `"ms_qkformer"` (`PatchEmbeddingStage`): `BN(Conv1x1 stride 2 (s))`; its
    CIFAR flavour (`Embed_1Max`) pools after the second conv instead of the
    first: `a = Pool(U1(BN(Conv3x3(s))))`.

    Args:
        hidden_dim: int, output channels `E`.
        variant: `"maxformer"` or `"ms_qkformer"`.
        flavour: `"imagenet"` or `"cifar"`. Defaults to `"imagenet"`.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute each unit's input neuron and
            synapse in the backward pass, keeping only the tensors between
            them. Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, H, W, C]`; output `[batch, time, H/2, W/2, E]`.

    Example:
    >>> down = MaxFormerDownsampling(192)
    >>> u = down(keras.random.normal((2, 4, 56, 56, 96)))  # (2, 4, 28, 28, 192)
    """

    def build(self, input_shape):
        e = self.hidden_dim
        late = self.variant == "ms_qkformer" and self.flavour == "cifar"
        self.conv0, shape = self._unit("conv0", e, tuple(input_shape), pool=not late)
        self.conv1, _ = self._unit("conv1", e, shape, pool=late)
        if self.variant == "maxformer":
            options = {"strides": 1, "pool": True}
        else:
            options = {"strides": 2}
        self.shortcut, _ = self._unit(
            "shortcut",
            e,
            tuple(input_shape),
            kernel_size=1,
            fire_input=False,
            **options,
        )

    def call(self, inputs, training=None):
        s = self._fire(self.conv0, inputs, training)
        a = self._step(self.conv1, self._synapse(self.conv0, s, training), training)
        return a + self._synapse(self.shortcut, s, training)

    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = input_shape
        return (b, t, (h + 1) // 2, (w + 1) // 2, self.hidden_dim)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MaxFormerBlock(RematMixin, keras.layers.Layer):
    """`u = u + Mixer(u); u = u + MLP(u)` with membrane shortcuts.

    Mixers: `"dwc7"`/`"dwc5"`/`"dwc3"` (LIF -> depth-wise conv with bias -> BN),
    `"ssa"` (`MembraneSelfAttention`), `"qka"` (`MembraneTokenAttention`),
    `"none"` (MLP only). The MLP is SDT V1's `SpikeDrivenMLP`.

    Args:
        hidden_dim: int, channels.
        mixer: one of `MIXERS`.
        num_heads: int, attention heads (attention mixers). Defaults to `1`.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        attention_v_threshold: float, attention-gate threshold. Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, height, width, hidden_dim]`.

    Example:
    >>> block = MaxFormerBlock(32, mixer="dwc5")
    >>> u = block(keras.random.normal((2, 2, 8, 8, 32)))
    """

    def __init__(
        self, hidden_dim, mixer, num_heads=1, mlp_ratio=4.0, attention_v_threshold=0.5,
        neuron_config=None, **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        if mixer not in MIXERS:
            raise ValueError(f"`mixer` must be one of {MIXERS}; got {mixer!r}.")
        self.hidden_dim = int(hidden_dim)
        self.mixer_type = mixer
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})
        if mixer in ("ssa", "qka") and (
            self.num_heads < 1 or self.hidden_dim % self.num_heads
        ):
            raise ValueError(
                f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` ({num_heads})."
            )

    def build(self, input_shape):
        policy, neurons = self.dtype_policy, self.neuron_config
        attention = {
            "attention_v_threshold": self.attention_v_threshold,
            "neuron_config": neurons, "name": "attn", "dtype": policy,
        }  # fmt: skip
        if self.mixer_type.startswith("dwc"):
            self.mixer = MembraneUnit(
                self.hidden_dim, kernel_size=int(self.mixer_type[3:]), synapse="depthwise",
                use_bias=True, neuron_config=neurons, name="mixer", dtype=policy,
            )  # fmt: skip
            self.mixer.build(input_shape)
        elif self.mixer_type == "ssa":
            self.mixer = MembraneSelfAttention(
                self.hidden_dim, self.num_heads, attention_scale=0.125, **attention
            )
            b, t, h, w, c = input_shape
            self.mixer.build((b, t, None if h is None or w is None else h * w, c))
        elif self.mixer_type == "qka":
            self.mixer = MembraneTokenAttention(
                self.hidden_dim, self.num_heads, **attention
            )
            self.mixer.build(input_shape)
        else:
            self.mixer = None
        self.mlp = SpikeDrivenMLP(
            self.hidden_dim,
            self.mlp_ratio,
            neuron_config=neurons,
            name="mlp",
            dtype=policy,
        )
        self.mlp.build(input_shape)

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        u = inputs
        if self.mixer_type == "ssa":
            _, t, h, w, c = inputs.shape
            tokens = ops.reshape(inputs, (-1, t, h * w, c))
            u = u + ops.reshape(self.mixer(tokens, training=training), (-1, t, h, w, c))
        elif self.mixer is not None:
            u = u + self.mixer(inputs, training=training)
        return u + self.mlp(u, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "mixer": self.mixer_type,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
            }
        )
        return config
