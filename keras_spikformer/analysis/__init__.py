"""SNN analysis: firing rates, synaptic operations, energy estimates, plots,
accuracy against time steps."""

from keras_spikformer.analysis.callbacks import FiringRateCallback
from keras_spikformer.analysis.energy import CONVENTIONS, EnergyReport, energy_report
from keras_spikformer.analysis.firing_rates import firing_rates, neuron_layer_names
from keras_spikformer.analysis.plots import (
    plot_attention_maps,
    plot_firing_rates,
    plot_spike_raster,
)
from keras_spikformer.analysis.time_curve import (
    plot_time_curve,
    time_curve,
    write_time_curve,
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
    "plot_time_curve",
    "time_curve",
    "write_time_curve",
]
