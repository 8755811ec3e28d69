"""SpikeDrivenTransformer: the image classifier of the Spike-driven Transformer (V1)."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT
from keras_spikformer.models.backbone import check_int
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_backbone import (
    SpikeDrivenTransformerBackbone,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_preprocessor import (
    SpikeDrivenTransformerImageClassifierPreprocessor,
)
from keras_spikformer.neurons import LIFNeuron


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenTransformer(ImageClassifier):
    """Spike-driven Transformer classifier: backbone, head neuron, linear head.

    ```
    u = backbone(images)                    # [batch, T, h, w, D] membrane
    s = head_lif(mean over h, w of u)       # LIF over time on the averaged membrane
    logits = mean over T of head(s)         # Linear (bias), then the time average
    ```

    With `per_step_logits=True` the `[batch, T, classes]` logits are returned
    before the time average (what the TET loss of the CIFAR10-DVS recipe
    needs; the reference's `TET=True`).

    Args:
        backbone: a `SpikeDrivenTransformerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        preprocessor: a `SpikeDrivenTransformerImageClassifierPreprocessor` or
            `None` (inputs are then model-ready: resized and normalised).
        per_step_logits: bool, return logits per time step. Defaults to `False`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = SpikeDrivenTransformerBackbone(image_shape=(32, 32, 3),
    ...     hidden_dim=64, num_layers=1, num_timesteps=2, pooling="0011")
    >>> model = SpikeDrivenTransformer(backbone, num_classes=10)
    >>> logits = model(np.zeros((2, 32, 32, 3)))  # (2, 10)

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    backbone_cls = SpikeDrivenTransformerBackbone
    preprocessor_cls = SpikeDrivenTransformerImageClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes=1000,
        preprocessor=None,
        per_step_logits=False,
        **kwargs,
    ):
        if not isinstance(backbone, SpikeDrivenTransformerBackbone):
            raise TypeError(
                "`backbone` must be a SpikeDrivenTransformerBackbone; got "
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
        self.head = keras.layers.Dense(
            num_classes,
            kernel_initializer=TORCH_DEFAULT_INIT,
            bias_initializer=keras.initializers.RandomUniform(
                -(backbone.hidden_dim**-0.5), backbone.hidden_dim**-0.5
            ),
            name="head",
            dtype=policy,
        )

        # === Functional model ===
        inputs = keras.Input(
            shape=backbone.inputs[0].shape[1:], name=backbone.inputs[0].name
        )
        logits = self.time_features(backbone(inputs))  # [B, T, classes]
        if not per_step_logits:
            logits = ops.mean(logits, axis=1)
        outputs = self.logits_from_time_mean(logits)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.per_step_logits = bool(per_step_logits)

    def time_features(self, membrane):
        """Per-step logits `[batch, T, classes]` (float32): token mean, head
        neuron (it runs over time), linear head."""
        features = ops.mean(ops.cast(membrane, "float32"), axis=(2, 3))  # [B, T, D]
        return ops.cast(self.head(self.head_lif(features)), "float32")

    def logits_from_time_mean(self, logits):
        """The time-averaged logits, in float32 under mixed precision too."""
        return ops.cast(logits, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_classes": self.num_classes, "per_step_logits": self.per_step_logits}
        )
        return config
