"""SNN analysis: firing rates, synaptic operations, energy estimates, plots."""

from keras_spikformer.analysis.callbacks import FiringRateCallback
from keras_spikformer.analysis.energy import CONVENTIONS, EnergyReport, energy_report
from keras_spikformer.analysis.firing_rates import firing_rates, neuron_layer_names
from keras_spikformer.analysis.plots import (
    plot_attention_maps,
    plot_firing_rates,
    plot_spike_raster,
)

__all__ = [
    "CONVENTIONS",
    "EnergyReport",
    "FiringRateCallback",
    "energy_report",
    "firing_rates",
    "neuron_layer_names",
    "plot_attention_maps",
    "plot_firing_rates",
    "plot_spike_raster",
]
