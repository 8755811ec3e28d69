"""`Spikformer`: the image classifier (backbone, token/time average, linear head)."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.spikformer.spikformer_backbone import SpikformerBackbone
from keras_spikformer.models.spikformer.spikformer_preprocessor import (
    SpikformerImageClassifierPreprocessor,
)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class Spikformer(ImageClassifier):
    """Spikformer classifier: `SpikformerBackbone`, token/time average, linear head.

    Logits are `Dense(mean over time and tokens of the backbone tokens)`; there
    is no neuron in the head (as in the reference). With a `preprocessor`,
    `fit`/`evaluate`/`predict` take raw images of any size. Build one from the
    zoo with `Spikformer.from_preset(name)`, list them with `Spikformer.presets`.

    Args:
        backbone: a `SpikformerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        preprocessor: a `SpikformerImageClassifierPreprocessor` or `None`
            (inputs are then model-ready: resized and normalised).
        **kwargs: `name`, `trainable`.

    Example:
    >>> model = Spikformer.from_preset("spikformer_4_384_cifar10")
    >>> logits = model.predict(uint8_images)  # any size: preprocessed first
    >>> backbone = SpikformerBackbone(image_shape=(32, 32, 3), patch_size=4,
    ...     hidden_dim=64, num_layers=1, num_heads=4, num_timesteps=2)
    >>> tiny = Spikformer(backbone, num_classes=10)

    References:
        Zhou et al., "Spikformer: When Spiking Neural Network Meets
        Transformer", ICLR 2023 (arXiv 2209.15425).
    """

    backbone_cls = SpikformerBackbone
    preprocessor_cls = SpikformerImageClassifierPreprocessor

    def __init__(self, backbone, num_classes=1000, preprocessor=None, **kwargs):
        if not isinstance(backbone, SpikformerBackbone):
            raise TypeError(
                f"`backbone` must be a SpikformerBackbone; got {type(backbone).__name__}. "
                "Use the classifier of that backbone's family."
            )
        num_classes = _check_classes(num_classes)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = keras.layers.Dense(
            num_classes,
            kernel_initializer=TRUNC_NORMAL_INIT,
            name="head",
            dtype=backbone.dtype_policy,
        )

        # === Functional model ===
        inputs = keras.Input(
            shape=backbone.inputs[0].shape[1:], name=backbone.inputs[0].name
        )
        features = ops.mean(self.time_features(backbone(inputs)), axis=1)
        outputs = self.logits_from_time_mean(features)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes

    def time_features(self, tokens):
        """Token mean per time step, `[batch, T, D]` (averaged over time next)."""
        return ops.mean(tokens, axis=2)

    def logits_from_time_mean(self, features):
        """The head on the time-averaged features; float32 logits (also under
        mixed precision, for losses and top-k metrics)."""
        return ops.cast(self.head(features), "float32")

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config


def _check_classes(num_classes):
    from keras_spikformer.models.backbone import check_int

    return check_int("num_classes", num_classes)
