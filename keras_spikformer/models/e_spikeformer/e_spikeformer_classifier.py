"""ESpikeFormer image classifier: token mean, integer pre-head neuron, linear head(s)."""

import keras
from keras import ops

from keras_spikformer import preset_builder, presets
from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.backbone import check_int
from keras_spikformer.models.distillation_heads import DistillationHeadMixin
from keras_spikformer.models.e_spikeformer.e_spikeformer_backbone import (
    ESpikeFormerBaseBackbone,
    ESpikeFormerLargeBackbone,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_preprocessor import (
    ESpikeFormerImageClassifierPreprocessor,
)
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.neurons.integer_spike import IntegerSpikeNeuron


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormer(DistillationHeadMixin, ImageClassifier):
    """E-SpikeFormer (Spike-driven Transformer V3) classifier, Base or Large.

    Base backbone: `logits = Dense(SN_int(mean over tokens))`, the neuron
    giving integers `0..D` (`norm=1`).

    Large backbone: `f` = the token mean per time step, `z = SN_int(f)`;
    the main head reads the real-valued `f`, the distillation head `head_kd`
    the integer spikes `z`, both averaged over time. Called with
    `training=True` the model returns `(logits, logits_kd)` for the
    hard-distillation loss, otherwise their mean (the reference's rule);
    without the distillation head, the main logits.

    Args:
        backbone: an `ESpikeFormerBaseBackbone` or `ESpikeFormerLargeBackbone`.
        num_classes: int. Defaults to `1000`.
        distillation_head: bool, add `head_kd` (Large only). Defaults to
            `False`.
        preprocessor: an `ESpikeFormerImageClassifierPreprocessor` or `None`.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = ESpikeFormerBaseBackbone(image_shape=(64, 64, 3),
    ...     widths=(8, 16, 32, 48))
    >>> logits = ESpikeFormer(backbone, num_classes=10)(np.zeros((2, 64, 64, 3)))

    References:
        Yao et al., "Scaling Spike-driven Transformer with Efficient Spike
        Firing Approximation Training", IEEE TPAMI 2025 (arXiv 2411.16061).
    """

    backbone_cls = ESpikeFormerBaseBackbone
    preprocessor_cls = ESpikeFormerImageClassifierPreprocessor

    @classmethod
    def from_preset(cls, preset, load_weights=None, **overrides):
        """Builds the classifier of a Base or Large preset (see `ImageClassifier`).

        Example:
        >>> model = ESpikeFormer.from_preset("e_spikeformer_tiny_imagenet")
        """
        task_cls = presets.task_class(preset)
        if not issubclass(task_cls, ESpikeFormer):
            raise ValueError(
                f"{preset!r} is a {task_cls.__name__} preset, not an E-SpikeFormer one: "
                f"load it with `{task_cls.__name__}.from_preset(...)`."
            )
        return preset_builder.load_task(task_cls, preset, load_weights, overrides)

    def __init__(self, backbone, num_classes=1000, distillation_head=False,
                 preprocessor=None, **kwargs):  # fmt: skip
        large = isinstance(backbone, ESpikeFormerLargeBackbone)
        if not large and not isinstance(backbone, ESpikeFormerBaseBackbone):
            raise TypeError(
                f"`backbone` must be an ESpikeFormerBaseBackbone or "
                f"ESpikeFormerLargeBackbone; got {type(backbone).__name__}. Use the "
                "classifier of that backbone's family."
            )
        if distillation_head and not large:
            raise ValueError(
                "`distillation_head=True` needs an ESpikeFormerLargeBackbone: the Base "
                "models have one head."
            )
        num_classes = check_int("num_classes", num_classes)
        policy = backbone.dtype_policy
        init = "glorot_uniform" if large else TRUNC_NORMAL_INIT
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head_spike = IntegerSpikeNeuron(
            **backbone.neuron_config, norm=1.0, name="head_spike", dtype=policy
        )
        self.head = keras.layers.Dense(
            num_classes, kernel_initializer=init, name="head", dtype=policy
        )
        self.head_kd = None
        if distillation_head:
            self.head_kd = keras.layers.Dense(
                num_classes, kernel_initializer=init, name="head_kd", dtype=policy
            )

        # === Functional model ===
        inputs = keras.Input(shape=backbone.input.shape[1:], name=backbone.input.name)
        maps = self.backbone(inputs)
        if large:
            features = ops.mean(maps, axis=(2, 3))  # [B, T, C]
            outputs = [ops.mean(self.head(features), axis=1)]
            if self.head_kd is not None:
                spikes = self.head_spike(features)
                outputs.append(ops.mean(self.head_kd(spikes), axis=1))
        else:
            outputs = [self.head(self.head_spike(ops.mean(maps, axis=(1, 2))))]
        outputs = [ops.cast(o, "float32") for o in outputs]
        super().__init__(
            inputs=inputs,
            outputs=outputs if distillation_head else outputs[0],
            **kwargs,
        )

        # === Config ===
        self.num_classes = num_classes
        self.distillation_head = bool(distillation_head)

    def stream_refusal(self):
        return (
            "E-SpikeFormer (Spike-driven Transformer V3) runs one time step with "
            "integer spikes and keeps no membrane state from one step to the "
            "next: there is nothing to stream; call the model (or `predict`) on "
            "each frame"
        )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerLarge(ESpikeFormer):
    """`ESpikeFormer` on an `ESpikeFormerLargeBackbone` (the 83M/171M presets).

    Same arguments and behaviour as `ESpikeFormer`; a separate class so that
    presets find the classifier of each backbone.

    Example:
    >>> backbone = ESpikeFormerLargeBackbone(image_shape=(64, 64, 3),
    ...     widths=(16, 32, 64), num_layers=2)
    >>> model = ESpikeFormerLarge(backbone, num_classes=10, distillation_head=True)
    """

    backbone_cls = ESpikeFormerLargeBackbone
