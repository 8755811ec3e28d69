"""Max-Former and MS-QKFormer: QKFormer's successors with membrane shortcuts (NeurIPS 2025)."""

from keras_spikformer.models.maxformer.maxformer_attention import (
    MembraneSelfAttention,
    MembraneTokenAttention,
)
from keras_spikformer.models.maxformer.maxformer_backbone import (
    MaxFormerBackbone,
    MSQKFormerBackbone,
)
from keras_spikformer.models.maxformer.maxformer_classifier import MaxFormer, MSQKFormer
from keras_spikformer.models.maxformer.maxformer_layers import (
    MaxFormerBlock,
    MaxFormerDownsampling,
    MaxFormerPatchEmbedding,
)
from keras_spikformer.models.maxformer.maxformer_preprocessor import (
    MaxFormerImageClassifierPreprocessor,
    MSQKFormerImageClassifierPreprocessor,
)
from keras_spikformer.models.maxformer.maxformer_units import MembraneUnit

__all__ = [
    "MSQKFormer",
    "MSQKFormerBackbone",
    "MSQKFormerImageClassifierPreprocessor",
    "MaxFormer",
    "MaxFormerBackbone",
    "MaxFormerBlock",
    "MaxFormerDownsampling",
    "MaxFormerImageClassifierPreprocessor",
    "MaxFormerPatchEmbedding",
    "MembraneSelfAttention",
    "MembraneTokenAttention",
    "MembraneUnit",
]
