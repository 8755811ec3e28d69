"""Spiking layers shared by the model families: units, attention, MLPs, blocks, BN."""

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.direct_encoding import DirectEncoding
from keras_spikformer.layers.spikformer_block import SpikformerBlock
from keras_spikformer.layers.spiking_mlp import SpikingMLP
from keras_spikformer.layers.spiking_self_attention import SpikingSelfAttention
from keras_spikformer.layers.spiking_units import SpikingConv2D, SpikingDense

__all__ = [
    "BatchNorm",
    "DirectEncoding",
    "SpikformerBlock",
    "SpikingConv2D",
    "SpikingDense",
    "SpikingMLP",
    "SpikingSelfAttention",
]
