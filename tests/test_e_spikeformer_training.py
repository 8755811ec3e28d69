"""E-SpikeFormer training: `train` on the tiny preset (large tier), recipes, the distillation stage."""

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from test_family_training_cli import eager_fit, train_tiny  # noqa: F401 (fixture)

from keras_spikformer.convert import load_reference_weights
from keras_spikformer.models.e_spikeformer import ESpikeFormerLarge
from keras_spikformer.training.distillation import (
    HardDistillationLoss,
    HardDistillationModel,
    staged_recipes,
)
from keras_spikformer.training.recipe import Recipe

DATA = Path(__file__).parent / "data"


@pytest.mark.large
def test_cli_trains_the_tiny_e_spikeformer(tmp_path, capsys, eager_fit):  # noqa: F811
    trained = train_tiny("e_spikeformer_tiny_imagenet", tmp_path, capsys)
    assert type(trained.backbone).__name__ == "ESpikeFormerBaseBackbone"
    assert trained.backbone.rounding == "half_even"


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "preset, optimizer, layer_decay, mixup",
    [
        ("e_spikeformer_10m_imagenet", "lamb", 1.0, 0.0),
        ("e_spikeformer_171m_1x8_imagenet", "lamb", 0.75, 0.8),
    ],
)
def test_recipes_follow_the_reference_scripts(preset, optimizer, layer_decay, mixup):
    recipe = Recipe.from_preset(preset)
    assert recipe.optimizer == optimizer and recipe.label_smoothing == 0.1
    assert recipe.extras["layer_decay"] == layer_decay
    assert recipe.augment["mixup_alpha"] == mixup


class _FixedTeacher(keras.Model):
    """Stands in for the CAFormer teacher: the fixture's recorded teacher logits."""

    def __init__(self, logits):
        super().__init__()
        self.logits = np.asarray(logits, "float32")
        self.built = True

    def call(self, inputs, training=None):
        return ops.convert_to_tensor(self.logits)


@pytest.mark.backend_independent
def test_large_distillation_stage_reproduces_the_reference_loss():
    """`HardDistillationModel` + `HardDistillationLoss` (alpha 0.5, smoothing 0.1)
    on the Large fixture give the reference's `0.5 LS-CE(main) + 0.5 CE(kd, argmax teacher)`."""
    npz = np.load(DATA / "sdt_v3_large_small.npz")
    student = ESpikeFormerLarge.from_preset("e_spikeformer_large_tiny_imagenet")
    load_reference_weights(
        student, {k[3:]: npz[k] for k in npz.files if k.startswith("sd/")}
    )
    first, second = staged_recipes("e_spikeformer_171m_1x8_imagenet")
    assert second.extras["distillation_head"] and second.epochs == 100
    alpha = second.extras["distillation"]["alpha"]
    model = HardDistillationModel(student, _FixedTeacher(npz["train/teacher_logits"]))
    packed = model(npz["input"].transpose(0, 2, 3, 1), training=True)
    loss = HardDistillationLoss(10, alpha=alpha, label_smoothing=first.label_smoothing)
    value = float(ops.mean(loss.call(npz["train/labels"], packed)))
    np.testing.assert_allclose(value, float(npz["train/loss"]), rtol=1e-5)
