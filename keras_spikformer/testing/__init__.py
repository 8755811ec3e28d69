"""Test helpers for keras-spikformer layers and models (KerasHub-style)."""

from keras_spikformer.testing.gradients import loss_and_gradients, vector_jacobian
from keras_spikformer.testing.model_tests import (
    run_backbone_test,
    run_preset_test,
    run_task_test,
)
from keras_spikformer.testing.test_case import (
    run_layer_test,
    run_model_saving_test,
    run_serialization_test,
)

__all__ = [
    "loss_and_gradients",
    "run_backbone_test",
    "run_preset_test",
    "run_task_test",
    "run_layer_test",
    "run_model_saving_test",
    "run_serialization_test",
    "vector_jacobian",
]
