"""Spikformer (Zhou et al., ICLR 2023): backbone, classifier, preprocessor and stem."""

from keras_spikformer.models.spikformer.spikformer_backbone import SpikformerBackbone
from keras_spikformer.models.spikformer.spikformer_classifier import Spikformer
from keras_spikformer.models.spikformer.spikformer_layers import SpikingPatchSplitting
from keras_spikformer.models.spikformer.spikformer_preprocessor import (
    SpikformerImageClassifierPreprocessor,
)

__all__ = [
    "Spikformer",
    "SpikformerBackbone",
    "SpikformerImageClassifierPreprocessor",
    "SpikingPatchSplitting",
]
