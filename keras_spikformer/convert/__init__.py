"""Bringing reference (PyTorch) weights of every family into Keras."""

from keras_spikformer.convert.checkpoint_files import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    read_checkpoint,
    read_state_dict,
)
from keras_spikformer.convert.converter import ConversionReport, convert_checkpoint
from keras_spikformer.convert.reference_weights import (
    LoadReport,
    load_reference_weights,
    to_keras_layout,
)
from keras_spikformer.convert.spikformer_architecture import (
    ArchitectureError,
    infer_architecture,
)
from keras_spikformer.convert.spikformer_weights import (
    canonical_name,
    reference_module_map,
    reference_variable_map,
)

__all__ = [
    "ArchitectureError",
    "CheckpointFormatError",
    "ConversionReport",
    "LoadReport",
    "UnsafeCheckpointError",
    "convert_checkpoint",
    "infer_architecture",
    "read_checkpoint",
    "read_state_dict",
    "canonical_name",
    "load_reference_weights",
    "reference_module_map",
    "reference_variable_map",
    "to_keras_layout",
]
