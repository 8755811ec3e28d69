"""`ESpikeFormerImageClassifierPreprocessor`: the E-SpikeFormer presets' evaluation transform."""

import keras

from keras_spikformer.models.e_spikeformer.e_spikeformer_backbone import (
    ESpikeFormerBaseBackbone,
)
from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class ESpikeFormerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `ESpikeFormer` (see its Args).

    The released 224 models evaluate with a bicubic resize of the shorter
    side to 232 and a 224 centre crop (`crop_pct=224/232`), the 384 model
    with a resize to 384 (`crop_pct=1`); ImageNet's mean and std.

    Example:
    >>> pre = ESpikeFormerImageClassifierPreprocessor((224, 224), crop_pct=224 / 232,
    ...     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    backbone_cls = ESpikeFormerBaseBackbone
