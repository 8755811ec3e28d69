"""E-SpikeFormer backbones: Base (5.1M/10M/19M, no time axis) and Large (83M/171M)."""

import keras
from keras import ops

from keras_spikformer.layers.remat import check_remat
from keras_spikformer.models.backbone import (
    Backbone,
    check_image_shape,
    check_int,
    dtype_policy,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_attention import (
    ESpikeFormerBaseBlock,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_large_block import (
    ESpikeFormerLargeBlock,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_layers import (
    ESpikeFormerConvBlock,
    ESpikeFormerDownsampling,
)
from keras_spikformer.neurons.integer_spike import IntegerSpikeNeuron

# The reference's fixed layout of the conv stages: (downsampling, width index, blocks).
CONV_STAGES = (
    ("downsample1_2", 0, ("conv_block1_2",)),
    ("downsample2", 1, ("conv_block2_1", "conv_block2_2")),
)


def check_widths(widths, count, num_heads, heads_stages):
    """`widths` as `count` positive ints, the transformer ones divisible by the heads."""
    widths = tuple(widths)
    if len(widths) != count:
        raise ValueError(f"`widths` must be {count} channel counts; got {widths}.")
    widths = tuple(check_int(f"widths[{i}]", w) for i, w in enumerate(widths))
    if widths[0] < 2:
        raise ValueError(
            f"`widths[0]` must be >= 2 (stage 1 has widths[0] // 2); got {widths}."
        )
    for i in heads_stages:
        if widths[i] % num_heads:
            raise ValueError(
                f"widths[{i}]={widths[i]} is not divisible by num_heads={num_heads}; "
                "choose widths divisible by the heads or another head count."
            )
    return widths


def neuron_options(spike_levels, rounding, gradient_bounds):
    """The `IntegerSpikeNeuron` options shared by a backbone's neurons."""
    IntegerSpikeNeuron(spike_levels, rounding=rounding, gradient_bounds=gradient_bounds)
    return {"spike_levels": int(spike_levels), "rounding": rounding,
            "gradient_bounds": gradient_bounds}  # fmt: skip


def stem(inputs, widths, common):
    """downsample1_1: 7x7 stride-2 conv (with bias) and BN on the pixels, no neuron."""
    return ESpikeFormerDownsampling(
        widths[0] // 2, kernel_size=7, strides=2, padding=3, first_layer=True,
        name="downsample1_1", **common,
    )(inputs)  # fmt: skip


def conv_stages(x, widths, common, sep_conv, use_bias):
    """Stem conv block, downsample1_2, ConvBlock1_2, downsample2, ConvBlock2_1/2_2."""
    block = {"sep_conv": sep_conv, "use_bias": use_bias, **common}
    x = ESpikeFormerConvBlock(name="conv_block1_1", **block)(x)
    for down, index, blocks in CONV_STAGES:
        x = ESpikeFormerDownsampling(widths[index], name=down, **common)(x)
        for name in blocks:
            x = ESpikeFormerConvBlock(name=name, **block)(x)
    return x


class _ESpikeFormerBackbone(Backbone):
    """Shared config of the two E-SpikeFormer backbones."""

    def _store(self, **config):
        self._config = config
        for key, value in config.items():
            setattr(self, key, value)

    @property
    def hidden_dim(self):
        """Channels of the output maps (the last width)."""
        return self.widths[-1]

    @property
    def neuron_config(self):
        return {"spike_levels": self.spike_levels, "rounding": self.rounding,
                "gradient_bounds": self.gradient_bounds}  # fmt: skip

    def get_config(self):
        config = super().get_config()
        for key, value in self._config.items():
            config[key] = list(value) if isinstance(value, tuple) else value
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerBaseBackbone(_ESpikeFormerBackbone):
    """E-SpikeFormer Base (`Spiking_vit_MetaFormer_Spike_SepConv`) feature extractor.

    Four stages on images `[batch, H, W, C]`, no time axis: conv stages 1-2
    (conv blocks with a spiking SepConv), transformer stages 3-4 (SepConv,
    linear attention with a 4x wider V, MLP); integer spikes
    `round_half_even(clip(x, 0, 4)) / 4`. Returns real-valued maps
    `[batch, H/16, W/16, widths[3]]`.

    Args:
        image_shape: `(height, width, channels)`. Defaults to `(224, 224, 3)`.
        widths: four ints `(c0, c1, c2, c3)`; stage 1 has `c0 // 2`.
            Defaults to `(32, 64, 128, 192)` (the 5.1M model).
        num_heads: int. Defaults to `8`.
        mlp_ratio: float. Defaults to `4.0`.
        num_layers: two ints, blocks in stages 3 and 4. Defaults to `(6, 2)`.
        value_expansion: int, V width over C. Defaults to `4`.
        num_timesteps: must be `1`: the Base models have no time axis (their
            `D` virtual steps live in the integer levels). Stored so that
            training and analysis tools read `T` as for the other families.
        spike_levels: int `D`. Defaults to `4`.
        rounding: `"half_even"` (reference) or `"half_up"`.
        gradient_bounds: `"inclusive"` (reference) or `"exclusive"`.
        remat: bool, in training recompute every downsampling layer, conv
            block and transformer block in the backward pass instead of
            storing their activations (less memory, more compute; the same
            step). Defaults to `False`.
        dtype: dtype policy.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = ESpikeFormerBaseBackbone(image_shape=(64, 64, 3),
    ...     widths=(8, 16, 32, 48))
    >>> maps = backbone(np.zeros((2, 64, 64, 3)))  # (2, 4, 4, 48)

    References:
        Yao et al., "Scaling Spike-driven Transformer with Efficient Spike
        Firing Approximation Training", IEEE TPAMI 2025 (arXiv 2411.16061).
    """

    def __init__(self, image_shape=(224, 224, 3), widths=(32, 64, 128, 192),
                 num_heads=8, mlp_ratio=4.0, num_layers=(6, 2), value_expansion=4,
                 num_timesteps=1, spike_levels=4, rounding="half_even", gradient_bounds="inclusive",
                 remat=False, dtype=None, **kwargs):  # fmt: skip
        image_shape = check_image_shape(image_shape)
        if check_int("num_timesteps", num_timesteps) != 1:
            raise ValueError(
                f"E-SpikeFormer Base has no time axis: `num_timesteps` must be 1; got "
                f"{num_timesteps}. Its D virtual steps are `spike_levels`."
            )
        num_heads = check_int("num_heads", num_heads)
        widths = check_widths(widths, 4, num_heads, (2, 3))
        num_layers = tuple(check_int(f"num_layers[{i}]", n, minimum=0)
                           for i, n in enumerate(num_layers))  # fmt: skip
        if len(num_layers) != 2:
            raise ValueError(
                f"`num_layers` must be two counts (stages 3, 4); got {num_layers}."
            )
        neurons = neuron_options(spike_levels, rounding, gradient_bounds)
        policy = dtype_policy(dtype)
        remat = check_remat(remat)
        common = {"neuron_config": neurons, "remat": remat, "dtype": policy}

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x = stem(inputs, widths, common)
        x = conv_stages(x, widths, common, sep_conv=True, use_bias=False)
        block = {"num_heads": num_heads, "mlp_ratio": mlp_ratio,
                 "value_expansion": value_expansion, **common}  # fmt: skip
        for stage, width, strides, depth in ((3, widths[2], 2, num_layers[0]),
                                             (4, widths[3], 1, num_layers[1])):  # fmt: skip
            x = ESpikeFormerDownsampling(
                width, strides=strides, name=f"downsample{stage}", **common
            )(x)
            for j in range(depth):
                x = ESpikeFormerBaseBlock(name=f"block{stage}_{j}", **block)(x)
        super().__init__(inputs=inputs, outputs=x, dtype=policy, **kwargs)

        # === Config ===
        self._store(
            image_shape=image_shape, widths=widths, num_heads=num_heads,
            mlp_ratio=float(mlp_ratio), num_layers=num_layers,
            value_expansion=int(value_expansion), num_timesteps=1, remat=remat,
            **neurons,
        )  # fmt: skip


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerLargeBackbone(_ESpikeFormerBackbone):
    """E-SpikeFormer Large (`Spikformer` of `Model_Large`) feature extractor.

    Images `[batch, H, W, C]` are repeated over `num_timesteps` after the
    stem; conv stages 1-2 (plain 3x3-conv blocks with biases) and one stage
    of transformer blocks with RepConv q/k/v/proj, linear attention
    `Q (K^T V) / 8` and layer scales; integer spikes
    `floor(clip(x, 0, D) + 0.5) / D`. Returns real-valued maps
    `[batch, time, H/16, W/16, widths[2]]`.

    Args:
        image_shape: `(height, width, channels)`. Defaults to `(224, 224, 3)`.
        widths: three ints `(c0, c1, c2)`; stage 1 has `c0 // 2`. Defaults to
            `(128, 256, 512)` (83M); the 171M model uses `(196, 384, 768)`.
        num_heads: int. Defaults to `8`.
        mlp_ratio: float. Defaults to `4.0`.
        num_layers: int, transformer blocks. Defaults to `12`.
        num_timesteps: int `T` (1 in every released model). Defaults to `1`.
        spike_levels: int `D` (4 for "1x4", 8 for "1x8"). Defaults to `4`.
        rounding, gradient_bounds: neuron conventions; the reference's are
            `"half_up"` and `"exclusive"`.
        drop_path_rate: float, largest drop-path rate (linear over the
            blocks). Defaults to `0.0`.
        rep_branch_width: int or `None`: build the 83M rep branch with this
            first-BN width (768 in the released 83M files). Defaults to `None`.
        use_rep_branch: bool, run the rep branch. Defaults to `False`.
        layer_scale_init: float. Defaults to `1e-6`.
        remat: bool, in training recompute every downsampling layer, conv
            block and transformer block in the backward pass instead of
            storing their activations (less memory, more compute; the same
            step). Defaults to `False`.
        dtype: dtype policy.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = ESpikeFormerLargeBackbone(image_shape=(64, 64, 3),
    ...     widths=(16, 32, 64), num_layers=2)
    >>> maps = backbone(np.zeros((2, 64, 64, 3)))  # (2, 1, 4, 4, 64)
    """

    def __init__(self, image_shape=(224, 224, 3), widths=(128, 256, 512),
                 num_heads=8, mlp_ratio=4.0, num_layers=12, num_timesteps=1,
                 spike_levels=4, rounding="half_up", gradient_bounds="exclusive",
                 drop_path_rate=0.0, rep_branch_width=None, use_rep_branch=False,
                 layer_scale_init=1e-6, remat=False, dtype=None,
                 **kwargs):  # fmt: skip
        image_shape = check_image_shape(image_shape)
        num_heads = check_int("num_heads", num_heads)
        widths = check_widths(widths, 3, num_heads, (2,))
        num_layers = check_int("num_layers", num_layers, minimum=0)
        num_timesteps = check_int("num_timesteps", num_timesteps)
        neurons = neuron_options(spike_levels, rounding, gradient_bounds)
        policy = dtype_policy(dtype)
        remat = check_remat(remat)
        common = {"neuron_config": neurons, "remat": remat, "dtype": policy}

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x = stem(inputs, widths, common)
        # Static images: the stem runs once; T identical copies give the
        # same batch statistics.
        x = ops.repeat(ops.expand_dims(x, 1), num_timesteps, axis=1)
        x = conv_stages(x, widths, common, sep_conv=False, use_bias=True)
        x = ESpikeFormerDownsampling(widths[2], name="downsample3", **common)(x)
        for j in range(num_layers):
            rate = drop_path_rate * j / max(num_layers - 1, 1)
            x = ESpikeFormerLargeBlock(
                num_heads, mlp_ratio, drop_path_rate=rate,
                rep_branch_width=rep_branch_width, use_rep_branch=use_rep_branch,
                layer_scale_init=layer_scale_init, name=f"block3_{j}", **common,
            )(x)  # fmt: skip
        super().__init__(inputs=inputs, outputs=x, dtype=policy, **kwargs)

        # === Config ===
        self._store(
            image_shape=image_shape, widths=widths, num_heads=num_heads,
            mlp_ratio=float(mlp_ratio), num_layers=num_layers,
            num_timesteps=num_timesteps, drop_path_rate=float(drop_path_rate),
            rep_branch_width=None if rep_branch_width is None else int(rep_branch_width),
            use_rep_branch=bool(use_rep_branch),
            layer_scale_init=float(layer_scale_init), remat=remat, **neurons,
        )  # fmt: skip
