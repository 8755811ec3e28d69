"""Spikformer models."""

from keras_spikformer.models.spikformer import Spikformer
from keras_spikformer.models.spikformer_backbone import SpikformerBackbone

__all__ = ["Spikformer", "SpikformerBackbone"]
