"""Preprocessors of the Max-Former and MS-QKFormer presets (their evaluation transform)."""

import keras

from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.models.maxformer.maxformer_backbone import (
    MaxFormerBackbone,
    MSQKFormerBackbone,
)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MaxFormerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `MaxFormer` (see its Args).

    The ImageNet presets evaluate as the reference does: bicubic resize of the
    shorter side to 256 (`224 / 0.875`), centre crop 224, ImageNet mean/std.

    Example:
    >>> pre = MaxFormerImageClassifierPreprocessor((224, 224), crop_pct=0.875,
    ...     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    backbone_cls = MaxFormerBackbone


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MSQKFormerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `MSQKFormer` (as `MaxFormer`'s).

    Example:
    >>> pre = MSQKFormerImageClassifierPreprocessor((224, 224), crop_pct=0.875,
    ...     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    backbone_cls = MSQKFormerBackbone
