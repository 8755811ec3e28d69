"""Inference forms of trained models: batch-norm folding and export."""

from keras_spikformer.inference.export import export_model
from keras_spikformer.inference.fusion import fold_into, folded_weights, fuse, refresh
from keras_spikformer.inference.fusion_rules import folding_pairs

__all__ = [
    "export_model",
    "fold_into",
    "folded_weights",
    "folding_pairs",
    "fuse",
    "refresh",
]
