"""`SpikformerImageClassifierPreprocessor`: the Spikformer presets' evaluation transform."""

import keras

from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.models.spikformer.spikformer_backbone import SpikformerBackbone


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikformerImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """`ImageClassifierPreprocessor` for `Spikformer` (see its Args).

    Example:
    >>> pre = SpikformerImageClassifierPreprocessor((32, 32), mean=(0.4914, 0.4822,
    ...     0.4465), std=(0.247, 0.2435, 0.2616))
    """

    backbone_cls = SpikformerBackbone
