"""QKFormerBackbone: hierarchical spiking transformer with Q-K attention."""

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
from keras_spikformer.models.qkformer.qkformer_layers import (
    FLAVOURS,
    QKFormerBlock,
    QKFormerDownsampling,
    QKFormerPatchEmbedding,
)

ENCODINGS = ("direct", "frames")
# Per flavour: number of stages, stem down-sampling, total down-sampling.
NUM_STAGES = {"imagenet": 3, "cifar": 3, "dvs": 2}
STEM_DOWNSAMPLING = QKFormerPatchEmbedding.DOWNSAMPLING


def stage_widths(hidden_dim, flavour):
    """Channels of each stage: `D/4, D/2, D` (ImageNet, CIFAR) or `D/2, D` (DVS)."""
    n = NUM_STAGES[flavour]
    return [hidden_dim // 2 ** (n - 1 - i) for i in range(n)]


def total_downsampling(flavour):
    return STEM_DOWNSAMPLING[flavour] * 2 ** (NUM_STAGES[flavour] - 1)


def validate_architecture(
    image_shape, hidden_dim, stage_depths, num_heads, mlp_ratio, num_timesteps,
    flavour, encoding,
):  # fmt: skip
    """Raises a `ValueError` naming the problem and the fix for impossible configs."""
    if flavour not in FLAVOURS:
        raise ValueError(
            f"`flavour` must be one of {FLAVOURS} (the reference's ImageNet, "
            f"CIFAR and DVS models); got {flavour!r}."
        )
    if encoding not in ENCODINGS:
        raise ValueError(f"`encoding` must be one of {ENCODINGS}; got {encoding!r}.")
    image_shape = check_image_shape(image_shape)
    check_int("num_timesteps", num_timesteps)
    check_int("hidden_dim", hidden_dim)
    check_int("num_heads", num_heads)
    n = NUM_STAGES[flavour]
    try:
        depths = tuple(stage_depths)
    except TypeError:
        depths = ()
    if len(depths) != n:
        example = "(1, 2, 7)" if flavour == "imagenet" else "(1, 1, 2)"
        example = "(1, 1)" if flavour == "dvs" else example
        raise ValueError(
            f"`stage_depths` must list {n} positive block counts for flavour "
            f"{flavour!r} (one per stage), e.g. {example}; got {stage_depths}."
        )
    for i, depth in enumerate(depths):
        check_int(f"stage_depths[{i}]", depth)
    unit = 16 if flavour == "dvs" else 8
    if int(hidden_dim) < unit or int(hidden_dim) % unit:
        raise ValueError(
            f"`hidden_dim` must be a positive multiple of {unit} for flavour "
            f"{flavour!r} (the stem's narrowest layer has hidden_dim/{unit} "
            f"channels); got {hidden_dim}. Try {max(unit, hidden_dim // unit * unit)}."
        )
    widths = stage_widths(int(hidden_dim), flavour)
    if int(num_heads) < 1 or any(w % int(num_heads) for w in widths):
        raise ValueError(
            f"`num_heads` ({num_heads}) must divide every stage width {widths}; "
            f"pick a divisor of {widths[0]} (the released models use 6, 8, 12 or 16)."
        )
    if not float(mlp_ratio) > 0:
        raise ValueError(f"`mlp_ratio` must be positive; got {mlp_ratio}.")
    f = total_downsampling(flavour)
    height, width = int(image_shape[0]), int(image_shape[1])
    if height % f or width % f:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by {f}, the total "
            f"down-sampling of the {flavour!r} flavour's patch embeddings. Resize "
            f"or crop to a multiple of {f} (e.g. {max(f, height // f * f)})."
        )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerBackbone(Backbone):
    """QKFormer feature extractor: patch embeddings and Q-K / self-attention stages.

    A functional model. ImageNet and CIFAR flavours have three stages of widths
    `D/4, D/2, D` (Q-K token attention, token attention, spiking self-attention),
    DVS two (`D/2, D`: token attention, self-attention); a patch-embedding
    module with a strided 1x1 shortcut starts each stage. With
    `encoding="direct"` it takes images `[batch, H, W, C]` repeated over time;
    with `"frames"`, event frames `[batch, T, H, W, C]`. It returns the
    residual stream of the last stage, `[batch, T, h, w, D]` (small integers).
    No positional embedding: any divisible image size runs with the same weights.

    Args:
        image_shape: tuple `(height, width, channels)`. Defaults to `(224, 224, 3)`.
        hidden_dim: int, last-stage width `D`. Defaults to `384`.
        stage_depths: blocks per stage (3 entries, DVS 2). Defaults to `(1, 2, 7)`.
        num_heads: int, heads in every stage; must divide each stage width.
            Defaults to `6`.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        num_timesteps: int, time steps `T`. Defaults to `4`.
        flavour: `"imagenet"`, `"cifar"` or `"dvs"`: which reference model's
            patch embeddings (see `QKFormerPatchEmbedding`). Defaults to `"imagenet"`.
        encoding: `"direct"` or `"frames"`. Defaults to `"direct"`.
        batch_spanning_projection: bool, reproduce the reference's last-stage
            projection neuron, which runs over the flattened (time, batch) axis
            (see `BatchSpanningLIFNeuron`); needed to match the released
            weights. Defaults to `True`.
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate: LIF
            options shared by every neuron (see `LIFNeuron`).
        attention_v_threshold: float, threshold of the attention neurons.
            Defaults to `0.5`.
        remat: bool, in training recompute each patch-embedding conv unit
            and every block in the backward pass instead of storing their
            activations (less memory, more compute; the same step). Defaults
            to `False`.
        dtype: dtype policy name or object, e.g. `"mixed_bfloat16"`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = QKFormerBackbone(image_shape=(32, 32, 3), hidden_dim=64,
    ...     stage_depths=(1, 1, 1), num_heads=8, num_timesteps=2, flavour="cifar")
    >>> features = backbone(np.zeros((2, 32, 32, 3)))  # (2, 2, 8, 8, 64)

    References:
        Zhou et al., "QKFormer: Hierarchical Spiking Transformer using Q-K
        Attention", NeurIPS 2024 (arXiv 2403.16552).
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        hidden_dim=384,
        stage_depths=(1, 2, 7),
        num_heads=6,
        mlp_ratio=4.0,
        num_timesteps=4,
        flavour="imagenet",
        encoding="direct",
        batch_spanning_projection=True,
        tau=2.0,
        v_threshold=1.0,
        attention_v_threshold=0.5,
        v_reset=0.0,
        decay_input=True,
        detach_reset=True,
        surrogate="sigmoid",
        remat=False,
        dtype=None,
        **kwargs,
    ):
        validate_architecture(
            image_shape, hidden_dim, stage_depths, num_heads, mlp_ratio,
            num_timesteps, flavour, encoding,
        )  # fmt: skip
        remat = check_remat(remat)
        policy = dtype_policy(dtype)
        neurons = neuron_config(
            tau, v_threshold, v_reset, decay_input, detach_reset, surrogate
        )
        image_shape = tuple(int(d) for d in image_shape)
        stage_depths = tuple(int(d) for d in stage_depths)
        num_timesteps = int(num_timesteps)
        widths = stage_widths(int(hidden_dim), flavour)

        # === Functional model ===
        if encoding == "direct":
            inputs = keras.Input(shape=image_shape, name="images")
        else:
            inputs = keras.Input(shape=(num_timesteps,) + image_shape, name="frames")
        x = QKFormerPatchEmbedding(
            widths[0], flavour=flavour, neuron_config=neurons,
            num_timesteps=num_timesteps if encoding == "direct" else None,
            remat=remat, name="patch_embed1", dtype=policy,
        )(inputs)  # fmt: skip
        for s, (width, depth) in enumerate(zip(widths, stage_depths, strict=True)):
            if s > 0:
                x = QKFormerDownsampling(
                    width, flavour=flavour, neuron_config=neurons, remat=remat,
                    name=f"patch_embed{s + 1}", dtype=policy,
                )(x)  # fmt: skip
            attention = "self" if s == len(widths) - 1 else "token"
            for j in range(depth):
                x = QKFormerBlock(
                    width, num_heads, mlp_ratio=mlp_ratio, attention=attention,
                    batch_spanning_projection=batch_spanning_projection,
                    attention_v_threshold=attention_v_threshold,
                    neuron_config=neurons, remat=remat, name=f"stage{s + 1}_block{j}",
                    dtype=policy,
                )(x)  # fmt: skip
        super().__init__(inputs=inputs, outputs=x, dtype=policy, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.hidden_dim = int(hidden_dim)
        self.stage_depths = stage_depths
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.num_timesteps = num_timesteps
        self.flavour = flavour
        self.encoding = encoding
        self.batch_spanning_projection = bool(batch_spanning_projection)
        self.tau = neurons["tau"]
        self.v_threshold = neurons["v_threshold"]
        self.attention_v_threshold = check_finite(
            "attention_v_threshold", attention_v_threshold
        )
        self.v_reset = neurons["v_reset"]
        self.decay_input = neurons["decay_input"]
        self.detach_reset = neurons["detach_reset"]
        self.surrogate = neurons["surrogate"]
        self.remat = remat

    @property
    def stage_widths(self):
        """Channels of each stage."""
        return stage_widths(self.hidden_dim, self.flavour)

    def get_config(self):
        config = super().get_config()
        config.update({
            "image_shape": list(self.image_shape),
            "hidden_dim": self.hidden_dim,
            "stage_depths": list(self.stage_depths),
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "num_timesteps": self.num_timesteps,
            "flavour": self.flavour,
            "encoding": self.encoding,
            "batch_spanning_projection": self.batch_spanning_projection,
            "tau": self.tau,
            "v_threshold": self.v_threshold,
            "attention_v_threshold": self.attention_v_threshold,
            "v_reset": self.v_reset,
            "decay_input": self.decay_input,
            "detach_reset": self.detach_reset,
            "surrogate": self.surrogate,
            "remat": self.remat,
        })  # fmt: skip
        return config
