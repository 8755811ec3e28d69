"""Bringing reference (PyTorch) Spikformer weights into Keras."""

from keras_spikformer.convert.reference_weights import (
    LoadReport,
    load_reference_weights,
    reference_module_map,
)

__all__ = ["LoadReport", "load_reference_weights", "reference_module_map"]
