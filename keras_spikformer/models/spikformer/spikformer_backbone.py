"""SpikformerBackbone: images or event frames in, spiking tokens out."""

import keras

from keras_spikformer.layers import SpikformerBlock
from keras_spikformer.layers.remat import check_remat
from keras_spikformer.models.backbone import (
    Backbone,
    check_finite,
    check_image_shape,
    check_int,
    dtype_policy,
    neuron_config,
)
from keras_spikformer.models.spikformer.spikformer_layers import (
    SpikingPatchSplitting,
    check_patch_size,
)

ENCODINGS = ("direct", "frames")


def validate_architecture(
    image_shape, patch_size, hidden_dim, num_layers, num_heads, mlp_ratio,
    num_timesteps, encoding,
):  # fmt: skip
    """Raises a `ValueError` naming the problem and the fix for impossible configs."""
    image_shape = check_image_shape(image_shape)
    check_int("num_timesteps", num_timesteps)
    check_int("num_layers", num_layers)
    check_int("num_heads", num_heads)
    check_int("hidden_dim", hidden_dim)
    check_int("patch_size", patch_size)
    if encoding not in ENCODINGS:
        raise ValueError(f"`encoding` must be one of {ENCODINGS}; got {encoding!r}.")
    if hidden_dim % 8:
        raise ValueError(
            f"`hidden_dim` must be divisible by 8 (the patch-splitting stem has "
            f"D/8, D/4, D/2 channels); got {hidden_dim}. Try {hidden_dim // 8 * 8 or 8}."
        )
    if hidden_dim % num_heads:
        divisors = [h for h in range(1, hidden_dim + 1) if hidden_dim % h == 0]
        raise ValueError(
            f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` "
            f"({num_heads}); valid head counts include {divisors[:12]}."
        )
    if not float(mlp_ratio) > 0:
        raise ValueError(f"`mlp_ratio` must be positive; got {mlp_ratio}.")
    check_patch_size(patch_size)
    height, width = int(image_shape[0]), int(image_shape[1])
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by patch_size "
            f"{patch_size}. Use an image size that is a multiple of {patch_size} "
            f"(e.g. {max(patch_size, height // patch_size * patch_size)})."
        )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikformerBackbone(Backbone):
    """Spikformer feature extractor: SPS stem and Spikformer blocks.

    A functional model: with `encoding="direct"` it takes images
    `[batch, height, width, channels]` and repeats them over time; with
    `encoding="frames"` it takes event frames
    `[batch, time, height, width, channels]`. It returns spiking tokens
    `[batch, time, tokens, hidden_dim]` (integer counts of the residual stream).

    Args:
        image_shape: tuple, `(height, width, channels)`. Defaults to `(224, 224, 3)`.
        patch_size: int, power of two up to 16. Defaults to `16`.
        hidden_dim: int, token width `D`, divisible by 8 and `num_heads`.
            Defaults to `384`.
        num_layers: int, Spikformer blocks. Defaults to `8`.
        num_heads: int, attention heads. Defaults to `12`.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        num_timesteps: int, time steps `T`. Defaults to `4`.
        qkv_bias: bool, bias on q/k/v (CIFAR reference: True). Defaults to `False`.
        attention_scale: float, SSA scale (0.125 images, 0.25 DVS). Defaults to `0.125`.
        encoding: `"direct"` (static images) or `"frames"` (event frames).
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate: LIF
            options shared by every neuron (see `LIFNeuron`).
        attention_v_threshold: float, threshold of the attention neuron. Defaults to `0.5`.
        remat: bool, in training recompute each stem stage and every
            Spikformer block in the backward pass from its input instead of
            storing its activations (less memory, about one more forward pass
            per step; batch-norm moving statistics are still updated once per
            step; see `benchmarks/README.md`). Defaults to `False`.
        dtype: dtype policy name or object, e.g. `"mixed_bfloat16"`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = SpikformerBackbone(image_shape=(32, 32, 3), patch_size=4,
    ...     hidden_dim=384, num_layers=4, num_heads=12)
    >>> tokens = backbone(np.zeros((2, 32, 32, 3)))  # (2, 4, 64, 384)

    References:
        Zhou et al., "Spikformer: When Spiking Neural Network Meets
        Transformer", ICLR 2023 (arXiv 2209.15425).
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        patch_size=16,
        hidden_dim=384,
        num_layers=8,
        num_heads=12,
        mlp_ratio=4.0,
        num_timesteps=4,
        qkv_bias=False,
        attention_scale=0.125,
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
        validate_architecture(
            image_shape, patch_size, hidden_dim, num_layers, num_heads, mlp_ratio,
            num_timesteps, encoding,
        )  # fmt: skip
        policy = dtype_policy(dtype)
        neurons = neuron_config(
            tau, v_threshold, v_reset, decay_input, detach_reset, surrogate
        )
        image_shape = tuple(int(d) for d in image_shape)
        num_timesteps = int(num_timesteps)

        # === Functional model ===
        remat = check_remat(remat)
        if encoding == "direct":
            # Static images: the stem repeats them over time after its first
            # convolution (see SpikingPatchSplitting.num_timesteps).
            inputs = keras.Input(shape=image_shape, name="images")
        else:
            inputs = keras.Input(shape=(num_timesteps,) + image_shape, name="frames")
        x = SpikingPatchSplitting(
            hidden_dim, patch_size, neuron_config=neurons,
            num_timesteps=num_timesteps if encoding == "direct" else None,
            remat=remat, name="patch_embed", dtype=policy,
        )(inputs)  # fmt: skip
        for i in range(num_layers):
            x = SpikformerBlock(
                hidden_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                attention_scale=attention_scale,
                attention_v_threshold=attention_v_threshold,
                neuron_config=neurons,
                remat=remat,
                name=f"block_{i}",
                dtype=policy,
            )(x)
        super().__init__(inputs=inputs, outputs=x, dtype=policy, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.num_timesteps = num_timesteps
        self.qkv_bias = bool(qkv_bias)
        self.attention_scale = check_finite("attention_scale", attention_scale)
        self.encoding = encoding
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
    def num_tokens(self):
        """Tokens per time step: `(height / patch) * (width / patch)`."""
        h, w, _ = self.image_shape
        return (h // self.patch_size) * (w // self.patch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_shape": list(self.image_shape),
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "num_timesteps": self.num_timesteps,
                "qkv_bias": self.qkv_bias,
                "attention_scale": self.attention_scale,
                "encoding": self.encoding,
                "tau": self.tau,
                "v_threshold": self.v_threshold,
                "attention_v_threshold": self.attention_v_threshold,
                "v_reset": self.v_reset,
                "decay_input": self.decay_input,
                "detach_reset": self.detach_reset,
                "surrogate": self.surrogate,
                "remat": self.remat,
            }
        )
        return config

    def get_layout_map(self, device_mesh, model_axis="model"):
        """Megatron-style tensor parallelism for Spikformer (see
        `keras_spikformer.training.distribute.get_layout_map`).

        Example:
        >>> mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"])
        >>> layout_map = backbone.get_layout_map(mesh)
        """
        from keras_spikformer.models.spikformer.spikformer_layout import get_layout_map

        return get_layout_map(device_mesh, model_axis=model_axis)
