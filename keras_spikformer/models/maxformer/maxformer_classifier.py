"""`MaxFormer` and `MSQKFormer`: backbone, head neuron, per-step linear head, time mean."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT
from keras_spikformer.models.backbone import check_int
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.maxformer.maxformer_backbone import (
    MaxFormerBackbone,
    MSQKFormerBackbone,
)
from keras_spikformer.models.maxformer.maxformer_preprocessor import (
    MaxFormerImageClassifierPreprocessor,
    MSQKFormerImageClassifierPreprocessor,
)
from keras_spikformer.neurons import LIFNeuron


class _MembraneHeadClassifier(ImageClassifier):
    """`logits = mean over T of Dense(LIF(mean over tokens of the stream)))`."""

    def __init__(self, backbone, num_classes=1000, preprocessor=None, **kwargs):
        if not isinstance(backbone, self.backbone_cls):
            raise TypeError(
                f"`backbone` must be a {self.backbone_cls.__name__}; got "
                f"{type(backbone).__name__}. Use the classifier of that backbone's family."
            )
        num_classes = check_int("num_classes", num_classes)
        policy = backbone.dtype_policy
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head_lif = LIFNeuron(
            **backbone.neuron_config, name="head_lif", dtype=policy
        )
        bound = backbone.hidden_dim**-0.5
        self.head = keras.layers.Dense(
            num_classes,
            kernel_initializer=TORCH_DEFAULT_INIT,
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            name="head",
            dtype=policy,
        )

        # === Functional model ===
        inputs = keras.Input(
            shape=backbone.inputs[0].shape[1:], name=backbone.inputs[0].name
        )
        logits = self.time_features(backbone(inputs))  # [B, T, classes]
        outputs = self.logits_from_time_mean(ops.mean(logits, axis=1))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes

    def time_features(self, membrane):
        """Per-step logits `[batch, T, classes]` (float32, also under mixed
        precision): token mean, head neuron, linear head."""
        features = ops.mean(ops.cast(membrane, "float32"), axis=(2, 3))  # [B, T, D]
        return ops.cast(self.head(self.head_lif(features)), "float32")

    def logits_from_time_mean(self, logits):
        """The time-averaged logits (already float32)."""
        return logits

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MaxFormer(_MembraneHeadClassifier):
    """Max-Former classifier (Fang et al., NeurIPS 2025).

    The stage-3 membrane stream is averaged over tokens, fired by a head LIF,
    mapped by a linear layer at each time step, then averaged over time.

    Args:
        backbone: a `MaxFormerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        preprocessor: a `MaxFormerImageClassifierPreprocessor` or `None`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = MaxFormerBackbone(image_shape=(64, 64, 3), hidden_dim=64,
    ...     stage_depths=(1, 2, 2), num_timesteps=2)
    >>> logits = MaxFormer(backbone, num_classes=10)(np.zeros((2, 64, 64, 3)))

    References:
        Fang et al., "Spiking Neural Networks Need High-Frequency Information",
        NeurIPS 2025 (arXiv 2505.18608); code bic-L/MaxFormer.
    """

    backbone_cls = MaxFormerBackbone
    preprocessor_cls = MaxFormerImageClassifierPreprocessor


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MSQKFormer(_MembraneHeadClassifier):
    """MS-QKFormer classifier: QKFormer with membrane shortcuts and a head LIF.

    Args:
        backbone: a `MSQKFormerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        preprocessor: a `MSQKFormerImageClassifierPreprocessor` or `None`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = MSQKFormerBackbone(image_shape=(64, 64, 3), hidden_dim=64,
    ...     stage_depths=(1, 1, 1), num_heads=1, num_timesteps=2)
    >>> logits = MSQKFormer(backbone, num_classes=10)(np.zeros((2, 64, 64, 3)))

    References:
        Fang et al., NeurIPS 2025 (arXiv 2505.18608); code bic-L/MaxFormer.
    """

    backbone_cls = MSQKFormerBackbone
    preprocessor_cls = MSQKFormerImageClassifierPreprocessor
