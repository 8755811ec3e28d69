"""MetaSpikeFormerBackbone: images in, membrane feature maps of the last stage out."""

import keras

from keras_spikformer.layers.remat import check_remat
from keras_spikformer.models.backbone import (
    Backbone,
    check_finite,
    check_image_shape,
    check_int,
    dtype_policy,
    neuron_config,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_attention import (
    MetaSpikeFormerBlock,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_layers import (
    MetaSpikeFormerConvBlock,
    MetaSpikeFormerDownsampling,
)

# The reference's fixed layout: conv blocks per conv stage (1_1, 1_2, 2).
CONV_BLOCKS = (
    ("conv_block1_1",),
    ("conv_block1_2",),
    ("conv_block2_1", "conv_block2_2"),
)


def validate_architecture(image_shape, widths, num_heads, mlp_ratio, num_layers,
                          num_timesteps):  # fmt: skip
    """Raises a `ValueError` naming the problem and the fix for impossible configs."""
    height, width, _ = check_image_shape(image_shape)
    if height % 16 or width % 16:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by 16 (four stride-2 "
            f"downsamplings). Resize to a multiple of 16, e.g. "
            f"{max(16, height // 16 * 16)}x{max(16, width // 16 * 16)}."
        )
    widths = tuple(widths)
    if len(widths) != 4:
        raise ValueError(
            f"`widths` must be four positive channel counts (E0, E1, E2, E3); got "
            f"{widths}. The 55M model uses (128, 256, 512, 640)."
        )
    widths = tuple(check_int(f"widths[{i}]", w) for i, w in enumerate(widths))
    if widths[0] % 2:
        raise ValueError(
            f"`widths[0]` must be even (the first downsampling has E0/2 channels); "
            f"got {widths[0]}."
        )
    num_heads = check_int("num_heads", num_heads)
    for stage, w in ((3, widths[2]), (4, widths[3])):
        if w % num_heads:
            nearest = w // num_heads * num_heads or num_heads
            raise ValueError(
                f"Stage-{stage} width {w} is not divisible by num_heads={num_heads}; "
                f"choose widths divisible by the heads (e.g. {nearest}) or another "
                "head count."
            )
    if not float(mlp_ratio) > 0:
        raise ValueError(f"`mlp_ratio` must be positive; got {mlp_ratio}.")
    layers = tuple(num_layers)
    if len(layers) != 2:
        raise ValueError(
            f"`num_layers` must be two counts of transformer blocks (stage 3, "
            f"stage 4); got {num_layers}. The reference uses (6, 2)."
        )
    for i, n in enumerate(layers):
        check_int(f"num_layers[{i}]", n, minimum=0)
    check_int("num_timesteps", num_timesteps)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerBackbone(Backbone):
    """Meta-SpikeFormer (Spike-driven Transformer V2) feature extractor.

    Four stages on static images `[batch, height, width, channels]` repeated
    over time: two conv-based stages (strided downsampling convs with bias,
    conv blocks with a separable 7x7 conv) and two transformer stages (RepConv
    projections, linear spike-driven attention), all with membrane shortcuts.
    Returns the real-valued membrane maps `[batch, time, H/16, W/16, E3]`.

    Args:
        image_shape: tuple, `(height, width, channels)`, sides divisible by 16.
            Defaults to `(224, 224, 3)`.
        widths: four ints `(E0, E1, E2, E3)`. Defaults to `(128, 256, 512, 640)`
            (the 55M model).
        num_heads: int, attention heads in stages 3 and 4. Defaults to `8`.
        mlp_ratio: float, MLP expansion of the transformer blocks. Defaults to `4.0`.
        num_layers: two ints, transformer blocks in stages 3 and 4. Defaults
            to `(6, 2)`.
        num_timesteps: int, time steps `T`. Defaults to `4`.
        attention_scale: float, scale of `Q K^T V`. Defaults to `0.125`.
        attention_v_threshold: float, threshold of the attention neuron.
            Defaults to `0.5`.
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate: LIF
            options shared by every neuron (see `LIFNeuron`).
        remat: bool, in training recompute every downsampling layer, conv
            block and transformer block in the backward pass instead of
            storing their activations (less memory, more compute; the same
            step). Defaults to `False`.
        dtype: dtype policy name or object, e.g. `"mixed_bfloat16"`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = MetaSpikeFormerBackbone(image_shape=(64, 64, 3),
    ...     widths=(8, 8, 16, 16), num_heads=4, num_layers=(1, 1), num_timesteps=2)
    >>> maps = backbone(np.zeros((2, 64, 64, 3)))  # (2, 2, 4, 4, 16)

    References:
        Yao et al., "Spike-driven Transformer V2: Meta Spiking Neural Network
        Architecture Inspiring the Design of Next-generation Neuromorphic
        Chips", ICLR 2024 (arXiv 2404.03663).
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        widths=(128, 256, 512, 640),
        num_heads=8,
        mlp_ratio=4.0,
        num_layers=(6, 2),
        num_timesteps=4,
        attention_scale=0.125,
        attention_v_threshold=0.5,
        tau=2.0,
        v_threshold=1.0,
        v_reset=0.0,
        decay_input=True,
        detach_reset=True,
        surrogate="sigmoid",
        remat=False,
        dtype=None,
        **kwargs,
    ):
        validate_architecture(
            image_shape, widths, num_heads, mlp_ratio, num_layers, num_timesteps
        )
        remat = check_remat(remat)
        policy = dtype_policy(dtype)
        neurons = neuron_config(
            tau, v_threshold, v_reset, decay_input, detach_reset, surrogate
        )
        image_shape = tuple(int(d) for d in image_shape)
        widths = tuple(int(w) for w in widths)
        num_layers = tuple(int(n) for n in num_layers)
        num_timesteps = int(num_timesteps)
        common = {"neuron_config": neurons, "remat": remat, "dtype": policy}

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x = MetaSpikeFormerDownsampling(
            widths[0] // 2, kernel_size=7, strides=2, padding=3, first_layer=True,
            num_timesteps=num_timesteps, name="downsample1_1", **common,
        )(inputs)  # fmt: skip
        downsampling = (
            ("downsample1_2", widths[0], 2),
            ("downsample2", widths[1], 2),
        )
        x = MetaSpikeFormerConvBlock(name=CONV_BLOCKS[0][0], **common)(x)
        for (name, filters, strides), blocks in zip(
            downsampling, CONV_BLOCKS[1:], strict=True
        ):
            x = MetaSpikeFormerDownsampling(
                filters, strides=strides, name=name, **common
            )(x)
            for block in blocks:
                x = MetaSpikeFormerConvBlock(name=block, **common)(x)
        block_args = {
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "attention_scale": attention_scale,
            "attention_v_threshold": attention_v_threshold,
            **common,
        }
        for stage, filters, strides, depth in (
            (3, widths[2], 2, num_layers[0]),
            (4, widths[3], 1, num_layers[1]),
        ):
            x = MetaSpikeFormerDownsampling(
                filters, strides=strides, name=f"downsample{stage}", **common
            )(x)
            for j in range(depth):
                x = MetaSpikeFormerBlock(name=f"block{stage}_{j}", **block_args)(x)
        super().__init__(inputs=inputs, outputs=x, dtype=policy, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.widths = widths
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.num_layers = num_layers
        self.num_timesteps = num_timesteps
        self.attention_scale = check_finite("attention_scale", attention_scale)
        self.attention_v_threshold = check_finite(
            "attention_v_threshold", attention_v_threshold
        )
        self.tau = neurons["tau"]
        self.v_threshold = neurons["v_threshold"]
        self.v_reset = neurons["v_reset"]
        self.decay_input = neurons["decay_input"]
        self.detach_reset = neurons["detach_reset"]
        self.surrogate = neurons["surrogate"]
        self.remat = remat

    @property
    def hidden_dim(self):
        """Channels of the output maps (`widths[3]`)."""
        return self.widths[3]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_shape": list(self.image_shape),
                "widths": list(self.widths),
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "num_layers": list(self.num_layers),
                "num_timesteps": self.num_timesteps,
                "attention_scale": self.attention_scale,
                "attention_v_threshold": self.attention_v_threshold,
                "tau": self.tau,
                "v_threshold": self.v_threshold,
                "v_reset": self.v_reset,
                "decay_input": self.decay_input,
                "detach_reset": self.detach_reset,
                "surrogate": self.surrogate,
                "remat": self.remat,
            }
        )
        return config
