"""`QKFormerImageClassifierPreprocessor`: the QKFormer presets' evaluation transform."""

import keras

from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.models.qkformer.qkformer_backbone import QKFormerBackbone


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `QKFormer` (see its Args).

    Example:
    >>> pre = QKFormerImageClassifierPreprocessor((224, 224), crop_pct=0.875,
    ...     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    backbone_cls = QKFormerBackbone
