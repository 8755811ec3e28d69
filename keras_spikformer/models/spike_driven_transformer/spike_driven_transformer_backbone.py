"""SpikeDrivenTransformerBackbone: images or event frames in, membrane feature maps out."""

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
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_layers import (
    SpikeDrivenBlock,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_stem import (
    SpikeDrivenPatchSplitting,
    check_pooling,
)

ENCODINGS = ("direct", "frames")


def validate_architecture(
    image_shape, hidden_dim, num_layers, num_heads, mlp_ratio, num_timesteps,
    pooling, encoding,
):  # fmt: skip
    """Raises a `ValueError` naming the problem and the fix for impossible configs."""
    check_image_shape(image_shape)
    check_int("num_timesteps", num_timesteps)
    check_int("num_layers", num_layers)
    check_int("hidden_dim", hidden_dim)
    check_int("num_heads", num_heads)
    if encoding not in ENCODINGS:
        raise ValueError(f"`encoding` must be one of {ENCODINGS}; got {encoding!r}.")
    if int(hidden_dim) < 8 or int(hidden_dim) % 8:
        raise ValueError(
            f"`hidden_dim` must be a positive multiple of 8 (the stem has D/8, D/4, "
            f"D/2 channels); got {hidden_dim}. Try {max(8, int(hidden_dim) // 8 * 8)}."
        )
    if int(num_heads) < 1 or int(hidden_dim) % int(num_heads):
        divisors = [h for h in range(1, hidden_dim + 1) if hidden_dim % h == 0]
        raise ValueError(
            f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` "
            f"({num_heads}); valid head counts include {divisors[:12]}."
        )
    if not float(mlp_ratio) > 0:
        raise ValueError(f"`mlp_ratio` must be positive; got {mlp_ratio}.")
    check_pooling(pooling)
    factor = 2 ** pooling.count("1")
    height, width = int(image_shape[0]), int(image_shape[1])
    if height % factor or width % factor:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by {factor}, the stem's "
            f"down-sampling with pooling={pooling!r}. Use a multiple of {factor} "
            f"(e.g. {max(factor, height // factor * factor)}) or fewer pooling flags."
        )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenTransformerBackbone(Backbone):
    """Spike-driven Transformer (V1) feature extractor: stem and membrane-shortcut blocks.

    A functional model: with `encoding="direct"` it takes images
    `[batch, height, width, channels]` and repeats them over time; with
    `encoding="frames"` it takes event frames
    `[batch, time, height, width, channels]`. It returns the real-valued
    membrane stream `[batch, time, height / r, width / r, hidden_dim]`
    (`r = 2**pooling.count("1")`), which the classifier averages over the grid
    and fires with its head neuron.

    Args:
        image_shape: tuple, `(height, width, channels)`. Defaults to `(224, 224, 3)`.
        hidden_dim: int, channels `D`, divisible by 8 and `num_heads`.
            Defaults to `512`.
        num_layers: int, blocks. Defaults to `8`.
        num_heads: int, attention heads. Defaults to `8`.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        num_timesteps: int, time steps `T`. Defaults to `4`.
        pooling: str of 4 flags `"0"`/`"1"`: max-pool after stem conv i.
            `"1111"` ImageNet (/16), `"0011"` CIFAR and CIFAR10-DVS (/4),
            `"0111"` DVS128 Gesture (/8). Defaults to `"1111"`.
        erode: bool, the CIFAR10-DVS dilations in the attention (`Erode`).
            Defaults to `False`.
        encoding: `"direct"` (static images) or `"frames"` (event frames).
        tau, v_threshold, v_reset, decay_input, detach_reset, surrogate: LIF
            options shared by every neuron (see `LIFNeuron`).
        attention_v_threshold: float, threshold of the attention mask neuron.
            Defaults to `0.5`.
        remat: bool, in training recompute each stem stage and every block
            in the backward pass instead of storing their activations (less
            memory, more compute; the same step). Defaults to `False`.
        dtype: dtype policy name or object, e.g. `"mixed_bfloat16"`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = SpikeDrivenTransformerBackbone(image_shape=(32, 32, 3),
    ...     hidden_dim=64, num_layers=1, num_heads=8, num_timesteps=2,
    ...     pooling="0011")
    >>> u = backbone(np.zeros((2, 32, 32, 3)))  # (2, 2, 8, 8, 64)

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        hidden_dim=512,
        num_layers=8,
        num_heads=8,
        mlp_ratio=4.0,
        num_timesteps=4,
        pooling="1111",
        erode=False,
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
            image_shape, hidden_dim, num_layers, num_heads, mlp_ratio,
            num_timesteps, pooling, encoding,
        )  # fmt: skip
        remat = check_remat(remat)
        policy = dtype_policy(dtype)
        neurons = neuron_config(
            tau, v_threshold, v_reset, decay_input, detach_reset, surrogate
        )
        image_shape = tuple(int(d) for d in image_shape)
        num_timesteps = int(num_timesteps)

        # === Functional model ===
        if encoding == "direct":
            inputs = keras.Input(shape=image_shape, name="images")
        else:
            inputs = keras.Input(shape=(num_timesteps,) + image_shape, name="frames")
        x = SpikeDrivenPatchSplitting(
            hidden_dim, pooling, neuron_config=neurons,
            num_timesteps=num_timesteps if encoding == "direct" else None,
            remat=remat, name="patch_embed", dtype=policy,
        )(inputs)  # fmt: skip
        for i in range(num_layers):
            x = SpikeDrivenBlock(
                hidden_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                erode=erode,
                attention_v_threshold=attention_v_threshold,
                neuron_config=neurons,
                remat=remat,
                name=f"block_{i}",
                dtype=policy,
            )(x)
        super().__init__(inputs=inputs, outputs=x, dtype=policy, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.num_timesteps = num_timesteps
        self.pooling = pooling
        self.erode = bool(erode)
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
    def neuron_config(self):
        """The `LIFNeuron` arguments shared by every neuron."""
        return {
            "tau": self.tau,
            "v_threshold": self.v_threshold,
            "v_reset": self.v_reset,
            "decay_input": self.decay_input,
            "detach_reset": self.detach_reset,
            "surrogate": self.surrogate,
        }

    @property
    def num_tokens(self):
        """Grid positions per time step: `(height / r) * (width / r)`."""
        factor = 2 ** self.pooling.count("1")
        return (self.image_shape[0] // factor) * (self.image_shape[1] // factor)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_shape": list(self.image_shape),
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "num_timesteps": self.num_timesteps,
                "pooling": self.pooling,
                "erode": self.erode,
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
