"""MetaSpikeFormer image classifier: backbone, token mean, head LIF, linear head(s)."""

import keras
from keras import ops

from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.backbone import check_int
from keras_spikformer.models.distillation_heads import DistillationHeadMixin
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_preprocessor import (
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spikformer.neurons import LIFNeuron


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormer(DistillationHeadMixin, ImageClassifier):
    """Meta-SpikeFormer classifier.

    Logits are `mean over T of Dense(LIF(mean over tokens of the backbone maps)))`
    (the head neuron runs over time on the token-averaged membrane). With
    `distillation_head=True` a second linear head `head_kd` reads the same
    spikes: called with `training=True` the model returns `(logits,
    logits_kd)` for the hard-distillation loss, otherwise their mean, as the
    reference does.

    Args:
        backbone: a `MetaSpikeFormerBackbone`.
        num_classes: int, output logits. Defaults to `1000`.
        distillation_head: bool, add the `head_kd` head. Defaults to `False`.
        preprocessor: a `MetaSpikeFormerImageClassifierPreprocessor` or `None`
            (inputs are then model-ready: resized and normalised).
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = MetaSpikeFormerBackbone(image_shape=(64, 64, 3),
    ...     widths=(8, 8, 16, 16), num_heads=4, num_layers=(1, 1), num_timesteps=2)
    >>> model = MetaSpikeFormer(backbone, num_classes=10)
    >>> logits = model(np.zeros((2, 64, 64, 3)))  # (2, 10)

    References:
        Yao et al., "Spike-driven Transformer V2", ICLR 2024 (arXiv 2404.03663).
    """

    backbone_cls = MetaSpikeFormerBackbone
    preprocessor_cls = MetaSpikeFormerImageClassifierPreprocessor

    def __init__(self, backbone, num_classes=1000, distillation_head=False,
                 preprocessor=None, **kwargs):  # fmt: skip
        if not isinstance(backbone, MetaSpikeFormerBackbone):
            raise TypeError(
                f"`backbone` must be a MetaSpikeFormerBackbone; got "
                f"{type(backbone).__name__}. Use the classifier of that backbone's "
                "family."
            )
        num_classes = check_int("num_classes", num_classes)
        policy = backbone.dtype_policy
        neuron_config = {
            "tau": backbone.tau,
            "v_threshold": backbone.v_threshold,
            "v_reset": backbone.v_reset,
            "decay_input": backbone.decay_input,
            "detach_reset": backbone.detach_reset,
            "surrogate": backbone.surrogate,
        }
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head_lif = LIFNeuron(**neuron_config, name="head_lif", dtype=policy)
        self.head = keras.layers.Dense(
            int(num_classes), kernel_initializer=TRUNC_NORMAL_INIT, name="head",
            dtype=policy,
        )  # fmt: skip
        self.head_kd = None
        if distillation_head:
            self.head_kd = keras.layers.Dense(
                int(num_classes), kernel_initializer=TRUNC_NORMAL_INIT,
                name="head_kd", dtype=policy,
            )  # fmt: skip

        # === Functional model ===
        inputs = keras.Input(shape=backbone.input.shape[1:], name=backbone.input.name)
        per_step = self.time_features(self.backbone(inputs))  # [B, T, classes]
        per_step = per_step if isinstance(per_step, tuple) else (per_step,)
        outputs = [ops.cast(ops.mean(logits, axis=1), "float32") for logits in per_step]
        super().__init__(
            inputs=inputs,
            outputs=outputs if distillation_head else outputs[0],
            **kwargs,
        )

        # === Config ===
        self.num_classes = int(num_classes)
        self.distillation_head = bool(distillation_head)

    def time_features(self, maps):
        """Per-step logits `[batch, T, classes]` (a pair with the distillation
        head): token mean, head neuron (it runs over time), linear head(s)."""
        spikes = self.head_lif(ops.mean(maps, axis=(2, 3)))  # [B, T, C]
        if self.head_kd is None:
            return self.head(spikes)
        return self.head(spikes), self.head_kd(spikes)

    def logits_from_time_mean(self, logits):
        """Inference logits from the time-averaged logits of each head (their
        mean with the distillation head, as `call` returns)."""
        if not isinstance(logits, tuple):
            return ops.cast(logits, "float32")
        return (ops.cast(logits[0], "float32") + ops.cast(logits[1], "float32")) / 2.0
