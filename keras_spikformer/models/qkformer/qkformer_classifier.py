"""`QKFormer`: the image classifier (backbone, token/time average, linear head)."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.backbone import check_int
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.qkformer.qkformer_backbone import QKFormerBackbone
from keras_spikformer.models.qkformer.qkformer_preprocessor import (
    QKFormerImageClassifierPreprocessor,
)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormer(ImageClassifier):
    """QKFormer classifier: `Dense(mean over time of the mean over tokens)`.

    No neuron in the head: the linear layer reads the time-and-token average
    of the last stage's integer residual stream, as in the reference. With a
    `preprocessor`, `fit`/`evaluate`/`predict` take raw images of any size.

    Args:
        backbone: a `QKFormerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        preprocessor: a `QKFormerImageClassifierPreprocessor` or `None`
            (inputs are then model-ready: resized and normalised).
        **kwargs: `name`, `trainable`.

    Example:
    >>> model = QKFormer.from_preset("qkformer_10_768_imagenet", load_weights=False)
    >>> backbone = QKFormerBackbone(image_shape=(32, 32, 3), hidden_dim=64,
    ...     stage_depths=(1, 1, 1), num_heads=8, num_timesteps=2, flavour="cifar")
    >>> tiny = QKFormer(backbone, num_classes=10)
    >>> logits = tiny(np.zeros((2, 32, 32, 3)))  # (2, 10)

    References:
        Zhou et al., "QKFormer: Hierarchical Spiking Transformer using Q-K
        Attention", NeurIPS 2024 (arXiv 2403.16552).
    """

    backbone_cls = QKFormerBackbone
    preprocessor_cls = QKFormerImageClassifierPreprocessor

    def __init__(self, backbone, num_classes=1000, preprocessor=None, **kwargs):
        if not isinstance(backbone, QKFormerBackbone):
            raise TypeError(
                f"`backbone` must be a QKFormerBackbone; got {type(backbone).__name__}. "
                "Use the classifier of that backbone's family."
            )
        num_classes = check_int("num_classes", num_classes)
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

    def time_features(self, maps):
        """Spatial mean per time step of the `[batch, T, h, w, D]` maps, `[batch, T, D]`."""
        return ops.mean(ops.mean(maps, axis=3), axis=2)

    def logits_from_time_mean(self, features):
        """The head on the time-averaged features; float32 logits (also under
        mixed precision, for losses and top-k metrics)."""
        return ops.cast(self.head(features), "float32")

    def stream_refusal(self):
        if self.backbone.batch_spanning_projection:
            return (
                "its stage-3 projection neuron steps through the whole batch (the "
                "reference's batch-spanning projection), so one time step cannot be "
                "computed without the others: build the model with "
                "batch_spanning_projection=False (e.g. `QKFormer.from_preset(name, "
                "batch_spanning_projection=False)`; outputs then differ from the "
                "reference checkpoints) to stream it"
            )
        return None

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config
