"""Streaming inference: one time step per call, membranes carried over."""

from keras_spikformer.streaming.early_exit import EarlyExit, anytime_predict
from keras_spikformer.streaming.step_export import (
    export_step,
    initial_step_state,
    state_from_outputs,
    state_names,
)
from keras_spikformer.streaming.step_network import (
    StepNetwork,
    check_streamable,
    single_step_copy,
)
from keras_spikformer.streaming.stream import Stream

__all__ = [
    "EarlyExit",
    "StepNetwork",
    "Stream",
    "anytime_predict",
    "check_streamable",
    "export_step",
    "initial_step_state",
    "single_step_copy",
    "state_from_outputs",
    "state_names",
]
