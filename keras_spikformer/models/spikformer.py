"""Spikformer image classifier with presets."""

import keras
from keras import ops

from keras_spikformer import presets
from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.spikformer_backbone import (
    InputCheckMixin,
    SpikformerBackbone,
)


class _PresetCatalogue:
    """Class attribute: `Spikformer.presets` maps preset names to their metadata."""

    def __get__(self, instance, owner):
        return presets.catalogue()


@keras.saving.register_keras_serializable(package="keras_spikformer")
class Spikformer(InputCheckMixin, keras.Model):
    """Spikformer classifier: `SpikformerBackbone`, token/time average, linear head.

    Logits are `Dense(mean over time and tokens of the backbone tokens)`; there
    is no neuron in the head (as in the reference). Build one from the zoo with
    `Spikformer.from_preset(name)`, list them with `Spikformer.presets`.

    Args:
        image_shape, patch_size, hidden_dim, num_layers, num_heads, mlp_ratio,
        num_timesteps, qkv_bias, attention_scale, encoding, tau, v_threshold,
        attention_v_threshold, v_reset, decay_input, detach_reset, surrogate, remat:
            architecture, see `SpikformerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> model = Spikformer.from_preset("spikformer_4_384_cifar10")
    >>> logits = model.predict(images)  # images: [batch, 32, 32, 3]
    >>> tiny = Spikformer(image_shape=(32, 32, 3), patch_size=4, hidden_dim=64,
    ...     num_layers=1, num_heads=4, num_timesteps=2, num_classes=10)

    References:
        Zhou et al., "Spikformer: When Spiking Neural Network Meets
        Transformer", ICLR 2023 (arXiv 2209.15425).
    """

    presets = _PresetCatalogue()

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
        num_classes=1000,
        dtype=None,
        **kwargs,
    ):
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1; got {num_classes}.")
        backbone = SpikformerBackbone(
            image_shape=image_shape,
            patch_size=patch_size,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_timesteps=num_timesteps,
            qkv_bias=qkv_bias,
            attention_scale=attention_scale,
            encoding=encoding,
            tau=tau,
            v_threshold=v_threshold,
            attention_v_threshold=attention_v_threshold,
            v_reset=v_reset,
            decay_input=decay_input,
            detach_reset=detach_reset,
            surrogate=surrogate,
            remat=remat,
            dtype=dtype,
            name="backbone",
        )
        head = keras.layers.Dense(
            int(num_classes),
            kernel_initializer=TRUNC_NORMAL_INIT,
            name="head",
            dtype=backbone.dtype_policy_config,
        )

        # === Functional model ===
        inputs = keras.Input(
            shape=backbone.inputs[0].shape[1:], name=backbone.inputs[0].name
        )
        tokens = backbone(inputs)
        features = ops.mean(ops.mean(tokens, axis=2), axis=1)  # tokens, then time
        # Logits in float32 under mixed precision (losses and top-k metrics).
        outputs = ops.cast(head(features), "float32")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.dtype_policy = backbone.dtype_policy  # Functional models ignore `dtype`

        # === Config ===
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.preset_metadata = None

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            **self.backbone.architecture_config(),
            "num_classes": self.num_classes,
            "dtype": self.backbone.dtype_policy_config,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights=None, **overrides):
        """Builds a model from a zoo preset name or a preset directory.

        Args:
            preset: str, a name from `Spikformer.presets` or a directory written
                by `save_to_preset`.
            load_weights: `None` loads weights when the preset has them (and
                warns when it has none); `True` requires them; `False` skips them.
            **overrides: constructor arguments to change, e.g. `num_classes`,
                `num_timesteps`, `image_shape`, `dtype`. Weights whose shape the
                change keeps are loaded; the others (e.g. a new head) are
                freshly initialised, with a warning naming them.

        Returns:
            A `Spikformer`.

        Example:
        >>> model = Spikformer.from_preset("spikformer_4_384_cifar10", num_classes=100)
        """
        return presets.load(cls, preset, load_weights=load_weights, **overrides)

    def save_to_preset(self, directory, overwrite=False):
        """Writes `config.json`, `metadata.json` and weights to `directory`.

        The directory is written atomically: a temporary directory is filled,
        then moved into place. `Spikformer.from_preset(directory)` reads it back.

        Args:
            directory: str or path.
            overwrite: bool, replace an existing directory. Defaults to `False`.

        Example:
        >>> model.save_to_preset("./my_spikformer")
        """
        presets.save(self, directory, overwrite=overwrite)
