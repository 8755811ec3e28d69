"""`MaxFormerBackbone` and `MSQKFormerBackbone`: QKFormer's successors (membrane shortcuts)."""

import keras

from keras_spikformer.layers.remat import check_remat
from keras_spikformer.models.backbone import (
    Backbone,
    check_image_shape,
    check_int,
    dtype_policy,
    neuron_config,
)
from keras_spikformer.models.maxformer.maxformer_layers import (
    FLAVOURS,
    MaxFormerBlock,
    MaxFormerDownsampling,
    MaxFormerPatchEmbedding,
)

ENCODINGS = ("direct", "frames")
# Stem 4x (CIFAR 1x), then two stage embeddings of 2x.
# (DVS: stem 8x, one stage embedding.)
DOWNSAMPLING = {"imagenet": 16, "cifar": 4, "dvs": 16}
NUM_STAGES = {"imagenet": 3, "cifar": 3, "dvs": 2}
# What the reference hard-codes: heads (ImageNet: hidden_dim // 64).
DEFAULT_HEADS = {"cifar": 8, "dvs": 16}


def validate_architecture(
    image_shape, hidden_dim, stage_depths, num_heads, mlp_ratio, num_timesteps,
    encoding, heads_in_every_stage, flavour="imagenet",
):  # fmt: skip
    """Raises a `ValueError` naming the problem and the fix for impossible configs."""
    if flavour not in FLAVOURS:
        raise ValueError(f"`flavour` must be one of {FLAVOURS}; got {flavour!r}.")
    if flavour == "dvs" and heads_in_every_stage:
        raise ValueError(
            "MS-QKFormer has no 'dvs' flavour: the reference event model does not run "
            "as committed (successors/maxformer.md, section 8). Use 'imagenet' or 'cifar'."
        )
    if encoding not in ENCODINGS:
        raise ValueError(f"`encoding` must be one of {ENCODINGS}; got {encoding!r}.")
    image_shape = check_image_shape(image_shape)
    check_int("num_timesteps", num_timesteps)
    check_int("hidden_dim", hidden_dim)
    check_int("num_heads", num_heads)
    try:
        depths = tuple(stage_depths)
    except TypeError:
        depths = ()
    n = NUM_STAGES[flavour]
    if len(depths) != n:
        raise ValueError(
            f"`stage_depths` must list {n} positive block counts for flavour "
            f"{flavour!r} (one per stage), e.g. {(1, 1) if n == 2 else (1, 2, 7)}; "
            f"got {stage_depths}."
        )
    for i, depth in enumerate(depths):
        check_int(f"stage_depths[{i}]", depth)
    unit = 16 if flavour == "dvs" else 8
    if int(hidden_dim) % unit:
        raise ValueError(
            f"`hidden_dim` must be a multiple of {unit} for flavour {flavour!r} (the "
            f"stem's first conv has hidden_dim/{unit} channels); got {hidden_dim}. "
            f"Try {max(unit, hidden_dim // unit * unit)}."
        )
    widths = stage_widths(int(hidden_dim), flavour)
    checked = widths if heads_in_every_stage else widths[-1:]
    if any(w % int(num_heads) for w in checked):
        raise ValueError(
            f"`num_heads` ({num_heads}) must divide the attention stage widths "
            f"{checked}; the reference uses hidden_dim // 64."
        )
    if not float(mlp_ratio) > 0:
        raise ValueError(f"`mlp_ratio` must be positive; got {mlp_ratio}.")
    height, width = int(image_shape[0]), int(image_shape[1])
    f = DOWNSAMPLING[flavour]
    if height % f or width % f:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by {f}, the total "
            f"down-sampling of the {flavour!r} patch embeddings. Resize or crop to a "
            f"multiple of {f} (e.g. {max(f, height // f * f)})."
        )


def stage_widths(hidden_dim, flavour="imagenet"):
    """Channels of the stages: `D/4, D/2, D` (DVS: `D/2, D`)."""
    n = NUM_STAGES[flavour]
    return [hidden_dim // 2 ** (n - 1 - i) for i in range(n)]


class _MembraneShortcutBackbone(Backbone):
    """Builds either family's functional graph; subclasses set the layout."""

    variant = None
    mixers = None  # per flavour, per stage
    heads_in_every_stage = False

    def __init__(
        self,
        image_shape=(224, 224, 3),
        hidden_dim=384,
        stage_depths=(1, 2, 7),
        num_heads=None,
        mlp_ratio=4.0,
        num_timesteps=4,
        flavour="imagenet",
        encoding="direct",
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
        if num_heads is None:
            num_heads = DEFAULT_HEADS.get(flavour, max(1, int(hidden_dim) // 64))
        validate_architecture(
            image_shape, hidden_dim, stage_depths, num_heads, mlp_ratio,
            num_timesteps, encoding, self.heads_in_every_stage, flavour,
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
        x = MaxFormerPatchEmbedding(
            widths[0], variant=self.variant, flavour=flavour, neuron_config=neurons,
            num_timesteps=num_timesteps if encoding == "direct" else None,
            remat=remat, name="patch_embed1", dtype=policy,
        )(inputs)  # fmt: skip
        for s, (width, depth) in enumerate(zip(widths, stage_depths, strict=True)):
            if s > 0:
                x = MaxFormerDownsampling(
                    width, variant=self.variant, flavour=flavour, neuron_config=neurons,
                    remat=remat, name=f"patch_embed{s + 1}", dtype=policy,
                )(x)  # fmt: skip
            for j in range(depth):
                x = MaxFormerBlock(
                    width, self.mixers[flavour][s], num_heads=num_heads, mlp_ratio=mlp_ratio,
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
        self.tau = neurons["tau"]
        self.v_threshold = neurons["v_threshold"]
        self.attention_v_threshold = float(attention_v_threshold)
        self.v_reset = neurons["v_reset"]
        self.decay_input = neurons["decay_input"]
        self.detach_reset = neurons["detach_reset"]
        self.surrogate = neurons["surrogate"]
        self.neuron_config = neurons
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


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MaxFormerBackbone(_MembraneShortcutBackbone):
    """Max-Former feature extractor (ImageNet layout), a membrane-shortcut network.

    Stem of strided convs (no pooling), then three stages of widths `D/4,
    D/2, D`: depth-wise 7x7 token mixing, depth-wise 5x5, spiking
    self-attention (`num_heads` heads); stage embeddings max-pool both
    paths. Every branch starts with a LIF and ends with batch norm; the
    residual stream is real valued. Returns that stream `[batch, T, h, w, D]`.

    Args:
        image_shape: tuple `(height, width, channels)`, sizes divisible by 16.
            Defaults to `(224, 224, 3)`.
        hidden_dim: int, last-stage width `D`. Defaults to `384`.
        stage_depths: blocks per stage. Defaults to `(1, 2, 7)` (the reference
            hard-codes these).
        num_heads: int, stage-3 heads; `None` gives the reference's
            (ImageNet `hidden_dim // 64`, CIFAR 8).
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        num_timesteps: int, time steps `T`. Defaults to `4`.
        flavour: `"imagenet"` (the stem down-samples 4x; mixers DWC 7x7, 5x5)
            or `"cifar"` (no stem down-sampling; stage 1 is MLP only, stage 2
            mixes with DWC 3x3; the reference CIFAR file) or `"dvs"` (event
            frames: an 8x max-pool stem, two stages `D/2, D`: DWC 3x3, then
            SSA; Max-Former only). Defaults to `"imagenet"`.
        encoding: `"direct"` (images repeated over time) or `"frames"`
            (`[batch, T, H, W, C]`). Defaults to `"direct"`.
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate: LIF
            options shared by every neuron (see `LIFNeuron`).
        attention_v_threshold: float, attention neuron threshold. Defaults to `0.5`.
        remat: bool, in training recompute each patch-embedding unit and
            every block in the backward pass instead of storing their
            activations (less memory, more compute; the same step). Defaults
            to `False`.
        dtype: dtype policy name or object.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = MaxFormerBackbone(image_shape=(64, 64, 3), hidden_dim=64,
    ...     stage_depths=(1, 2, 2), num_timesteps=2)
    >>> u = backbone(np.zeros((2, 64, 64, 3)))  # (2, 2, 4, 4, 64)

    References:
        Fang et al., "Spiking Neural Networks Need High-Frequency Information",
        NeurIPS 2025 (arXiv 2505.18608); code bic-L/MaxFormer.
    """

    variant = "maxformer"
    mixers = {
        "imagenet": ("dwc7", "dwc5", "ssa"),
        "cifar": ("none", "dwc3", "ssa"),
        "dvs": ("dwc3", "ssa"),
    }


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MSQKFormerBackbone(_MembraneShortcutBackbone):
    """MS-QKFormer feature extractor: QKFormer rewired with membrane shortcuts.

    QKFormer's ImageNet layout (pooling stem, Q-K token attention in stages 1
    and 2, spiking self-attention in stage 3), every branch starting with a
    LIF and ending with batch norm; `num_heads` heads in every stage. Same
    tensor shapes as QKFormer, a different function. Arguments as
    `MaxFormerBackbone`.

    Example:
    >>> backbone = MSQKFormerBackbone(image_shape=(64, 64, 3), hidden_dim=64,
    ...     stage_depths=(1, 1, 1), num_heads=1, num_timesteps=2)
    >>> u = backbone(np.zeros((2, 64, 64, 3)))  # (2, 2, 4, 4, 64)

    References:
        Fang et al., NeurIPS 2025 (arXiv 2505.18608); code bic-L/MaxFormer.
    """

    variant = "ms_qkformer"
    mixers = {"imagenet": ("qka", "qka", "ssa"), "cifar": ("qka", "qka", "ssa")}
    heads_in_every_stage = True
