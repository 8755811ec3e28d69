"""Bringing reference (PyTorch) Spikformer weights into Keras."""

from keras_spikformer.convert.reference_weights import (
    LoadReport,
    canonical_name,
    load_reference_weights,
    reference_module_map,
    reference_variable_map,
    to_keras_layout,
)

__all__ = [
    "LoadReport",
    "canonical_name",
    "load_reference_weights",
    "reference_module_map",
    "reference_variable_map",
    "to_keras_layout",
]
