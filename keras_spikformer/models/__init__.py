"""Model families (one folder each) and their shared base classes."""

from keras_spikformer.models.backbone import Backbone
from keras_spikformer.models.e_spikeformer import (
    ESpikeFormer,
    ESpikeFormerBaseBackbone,
    ESpikeFormerImageClassifierPreprocessor,
    ESpikeFormerLarge,
    ESpikeFormerLargeBackbone,
)
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.image_classifier_preprocessor import (
    ImageClassifierPreprocessor,
)
from keras_spikformer.models.maxformer import (
    MaxFormer,
    MaxFormerBackbone,
    MaxFormerImageClassifierPreprocessor,
    MSQKFormer,
    MSQKFormerBackbone,
    MSQKFormerImageClassifierPreprocessor,
)
from keras_spikformer.models.meta_spikeformer import (
    MetaSpikeFormer,
    MetaSpikeFormerBackbone,
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spikformer.models.qkformer import (
    QKFormer,
    QKFormerBackbone,
    QKFormerImageClassifierPreprocessor,
)
from keras_spikformer.models.spike_driven_transformer import (
    SpikeDrivenTransformer,
    SpikeDrivenTransformerBackbone,
    SpikeDrivenTransformerImageClassifierPreprocessor,
)
from keras_spikformer.models.spikformer import (
    Spikformer,
    SpikformerBackbone,
    SpikformerImageClassifierPreprocessor,
)

__all__ = [
    "Backbone",
    "ESpikeFormer",
    "ESpikeFormerBaseBackbone",
    "ESpikeFormerImageClassifierPreprocessor",
    "ESpikeFormerLarge",
    "ESpikeFormerLargeBackbone",
    "ImageClassifier",
    "ImageClassifierPreprocessor",
    "MaxFormer",
    "MaxFormerBackbone",
    "MaxFormerImageClassifierPreprocessor",
    "MetaSpikeFormer",
    "MetaSpikeFormerBackbone",
    "MetaSpikeFormerImageClassifierPreprocessor",
    "MSQKFormer",
    "MSQKFormerBackbone",
    "MSQKFormerImageClassifierPreprocessor",
    "QKFormer",
    "QKFormerBackbone",
    "QKFormerImageClassifierPreprocessor",
    "SpikeDrivenTransformer",
    "SpikeDrivenTransformerBackbone",
    "SpikeDrivenTransformerImageClassifierPreprocessor",
    "Spikformer",
    "SpikformerBackbone",
    "SpikformerImageClassifierPreprocessor",
]
