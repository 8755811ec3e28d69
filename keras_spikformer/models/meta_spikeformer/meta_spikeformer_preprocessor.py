"""`MetaSpikeFormerImageClassifierPreprocessor`: the Meta-SpikeFormer presets' evaluation transform."""

import keras

from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MetaSpikeFormerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `MetaSpikeFormer` (see its Args).

    The released models evaluate with a bicubic resize to 256 and a 224
    center crop (`crop_pct=0.875`) and ImageNet's mean and std.

    Example:
    >>> pre = MetaSpikeFormerImageClassifierPreprocessor((224, 224), crop_pct=0.875,
    ...     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """

    backbone_cls = MetaSpikeFormerBackbone
