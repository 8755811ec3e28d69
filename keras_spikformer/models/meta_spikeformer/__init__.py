"""Meta-SpikeFormer (Spike-driven Transformer V2): conv + transformer stages."""

from keras_spikformer.models.meta_spikeformer.meta_spikeformer_attention import (
    MetaSpikeFormerAttention,
    MetaSpikeFormerBlock,
    MetaSpikeFormerMLP,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_classifier import (
    MetaSpikeFormer,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_layers import (
    MetaSpikeFormerConvBlock,
    MetaSpikeFormerDownsampling,
    MetaSpikeFormerSepConv,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_preprocessor import (
    MetaSpikeFormerImageClassifierPreprocessor,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_repconv import (
    MetaSpikeFormerBNAndPad,
    MetaSpikeFormerRepConv,
)

__all__ = [
    "MetaSpikeFormer",
    "MetaSpikeFormerAttention",
    "MetaSpikeFormerBNAndPad",
    "MetaSpikeFormerBackbone",
    "MetaSpikeFormerBlock",
    "MetaSpikeFormerConvBlock",
    "MetaSpikeFormerDownsampling",
    "MetaSpikeFormerImageClassifierPreprocessor",
    "MetaSpikeFormerMLP",
    "MetaSpikeFormerRepConv",
    "MetaSpikeFormerSepConv",
]
