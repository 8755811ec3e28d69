"""Streaming inference: one time step per call, membranes carried over."""

from keras_spikformer.streaming.early_exit import EarlyExit, anytime_predict
from keras_spikformer.streaming.step_network import (
    StepNetwork,
    check_streamable,
    single_step_copy,
)
from keras_spikformer.streaming.stream import Stream

__all__ = [
    "EarlyExit",
    "Stream",
    "anytime_predict",
    "StepNetwork",
    "check_streamable",
    "single_step_copy",
]
