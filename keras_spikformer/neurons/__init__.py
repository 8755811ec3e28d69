"""Spiking neurons and their surrogate gradients."""

from keras_spikformer.neurons.integer_spike import (
    IntegerSpikeNeuron,
    binary_expansion,
    integer_spike,
)
from keras_spikformer.neurons.lif_neuron import LIFNeuron
from keras_spikformer.neurons.neuron_state import CarriedMembranes
from keras_spikformer.neurons.recording import SpikeRecord, record_spikes
from keras_spikformer.neurons.surrogates import (
    ATanSurrogate,
    SigmoidSurrogate,
    Surrogate,
)
from keras_spikformer.neurons.surrogates import get as get_surrogate

__all__ = [
    "ATanSurrogate",
    "CarriedMembranes",
    "IntegerSpikeNeuron",
    "LIFNeuron",
    "SigmoidSurrogate",
    "SpikeRecord",
    "binary_expansion",
    "integer_spike",
    "Surrogate",
    "get_surrogate",
    "record_spikes",
]
