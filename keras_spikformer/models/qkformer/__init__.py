"""QKFormer: hierarchical spiking transformer with Q-K attention (NeurIPS 2024)."""

from keras_spikformer.models.qkformer.qkformer_attention import (
    BatchSpanningLIFNeuron,
    QKFormerSelfAttention,
    QKTokenAttention,
)
from keras_spikformer.models.qkformer.qkformer_backbone import QKFormerBackbone
from keras_spikformer.models.qkformer.qkformer_classifier import QKFormer
from keras_spikformer.models.qkformer.qkformer_layers import (
    QKFormerBlock,
    QKFormerConvUnit,
    QKFormerDownsampling,
    QKFormerPatchEmbedding,
)
from keras_spikformer.models.qkformer.qkformer_preprocessor import (
    QKFormerImageClassifierPreprocessor,
)

__all__ = [
    "BatchSpanningLIFNeuron",
    "QKFormer",
    "QKFormerBackbone",
    "QKFormerBlock",
    "QKFormerConvUnit",
    "QKFormerDownsampling",
    "QKFormerImageClassifierPreprocessor",
    "QKFormerPatchEmbedding",
    "QKFormerSelfAttention",
    "QKTokenAttention",
]
