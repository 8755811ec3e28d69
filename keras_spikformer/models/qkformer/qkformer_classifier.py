"""QKFormer image classifier: backbone, token/time average, linear head."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.qkformer.qkformer_backbone import QKFormerBackbone


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormer(keras.Model):
    """QKFormer classifier: `Dense(mean over time of the mean over tokens)`.

    No neuron in the head: the linear layer reads the time-and-token average
    of the last stage's integer residual stream, as in the reference.

    Args:
        backbone: a `QKFormerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        preprocessor: optional preprocessor (kept for the task API).
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = QKFormerBackbone(image_shape=(32, 32, 3), hidden_dim=64,
    ...     stage_depths=(1, 1, 1), num_heads=8, num_timesteps=2, flavour="cifar")
    >>> model = QKFormer(backbone, num_classes=10)
    >>> logits = model(np.zeros((2, 32, 32, 3)))  # (2, 10)

    References:
        Zhou et al., NeurIPS 2024 (arXiv 2403.16552).
    """

    def __init__(self, backbone, num_classes=1000, preprocessor=None, **kwargs):
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be >= 1; got {num_classes}.")
        head = keras.layers.Dense(
            int(num_classes),
            kernel_initializer=TRUNC_NORMAL_INIT,
            name="head",
            dtype=backbone.dtype_policy,
        )

        # === Functional model ===
        inputs = keras.Input(shape=backbone.input.shape[1:], name=backbone.input.name)
        x = backbone(inputs)  # [batch, T, h, w, D]
        features = ops.mean(ops.mean(ops.mean(x, axis=3), axis=2), axis=1)
        outputs = ops.cast(head(features), "float32")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = head
        self.num_classes = int(num_classes)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "preprocessor": None
            if self.preprocessor is None
            else keras.saving.serialize_keras_object(self.preprocessor),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("preprocessor") is not None:
            config["preprocessor"] = keras.saving.deserialize_keras_object(
                config["preprocessor"]
            )
        return cls(**config)
