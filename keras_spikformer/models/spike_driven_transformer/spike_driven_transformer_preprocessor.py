"""`SpikeDrivenTransformerImageClassifierPreprocessor`: the SDT presets' evaluation transform."""

import keras

from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_backbone import (
    SpikeDrivenTransformerBackbone,
)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenTransformerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `SpikeDrivenTransformer` (see its Args).

    The ImageNet presets evaluate as the reference does: bicubic resize of the
    shorter side to `224 / 0.95`, centre crop 224, ImageNet mean/std.

    Example:
    >>> pre = SpikeDrivenTransformerImageClassifierPreprocessor((224, 224),
    ...     crop_pct=0.95, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    backbone_cls = SpikeDrivenTransformerBackbone
