"""E-SpikeFormer (Spike-driven Transformer V3): integer spikes, Base and Large families."""

from keras_spikformer.models.e_spikeformer.e_spikeformer_attention import (
    ESpikeFormerBaseAttention,
    ESpikeFormerBaseBlock,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_backbone import (
    ESpikeFormerBaseBackbone,
    ESpikeFormerLargeBackbone,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_classifier import (
    ESpikeFormer,
    ESpikeFormerLarge,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_large_block import (
    ESpikeFormerLargeAttention,
    ESpikeFormerLargeBlock,
    ESpikeFormerRepConv,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_layers import (
    ESpikeFormerConvBlock,
    ESpikeFormerDownsampling,
    ESpikeFormerMLP,
    ESpikeFormerSepConv,
)
from keras_spikformer.models.e_spikeformer.e_spikeformer_preprocessor import (
    ESpikeFormerImageClassifierPreprocessor,
)

__all__ = [
    "ESpikeFormer",
    "ESpikeFormerBaseAttention",
    "ESpikeFormerBaseBackbone",
    "ESpikeFormerBaseBlock",
    "ESpikeFormerConvBlock",
    "ESpikeFormerDownsampling",
    "ESpikeFormerImageClassifierPreprocessor",
    "ESpikeFormerLarge",
    "ESpikeFormerLargeAttention",
    "ESpikeFormerLargeBackbone",
    "ESpikeFormerLargeBlock",
    "ESpikeFormerMLP",
    "ESpikeFormerRepConv",
    "ESpikeFormerSepConv",
]
