"""Spike-driven Transformer (V1): Yao et al., NeurIPS 2023 (arXiv 2307.01694)."""

from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_attention import (
    Erode,
    SpikeDrivenSelfAttention,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_backbone import (
    SpikeDrivenTransformerBackbone,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_classifier import (
    SpikeDrivenTransformer,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_layers import (
    SpikeDrivenBlock,
    SpikeDrivenMLP,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_preprocessor import (
    SpikeDrivenTransformerImageClassifierPreprocessor,
)
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_stem import (
    MembraneRPE,
    SpikeDrivenPatchSplitting,
)

__all__ = [
    "Erode",
    "MembraneRPE",
    "SpikeDrivenBlock",
    "SpikeDrivenMLP",
    "SpikeDrivenPatchSplitting",
    "SpikeDrivenSelfAttention",
    "SpikeDrivenTransformer",
    "SpikeDrivenTransformerBackbone",
    "SpikeDrivenTransformerImageClassifierPreprocessor",
]
