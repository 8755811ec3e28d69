"""Meta-SpikeFormer recipe: LAMB, the T=1 -> T=4 stages, hard distillation from a Keras teacher."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer.models.meta_spikeformer import (
    MetaSpikeFormer,
    MetaSpikeFormerBackbone,
)
from keras_spikformer.training.distillation import (
    HardDistillationLoss,
    HardDistillationModel,
    staged_recipes,
)

TINY = {
    "image_shape": (32, 32, 3),
    "widths": (8, 8, 16, 16),
    "num_heads": 4,
    "num_layers": (1, 1),
    "num_timesteps": 2,
}


@pytest.mark.backend_independent
def test_two_stage_recipe_of_the_presets():
    first, second = staged_recipes("meta_spikeformer_55m_imagenet")
    assert first.optimizer == second.optimizer == "lamb"
    assert first.extras["num_timesteps"] == 1 and second.extras["num_timesteps"] == 4
    assert first.learning_rate == pytest.approx(2.4e-3)
    assert second.learning_rate == pytest.approx(1.5e-5)
    assert (first.epochs, second.epochs) == (200, 50)
    assert second.extras["distillation"]["alpha"] == 0.5
    assert second.label_smoothing == first.label_smoothing == 0.1
    # Per-iteration warm-up from 0, then cosine to min_lr (MAE lr_sched).
    schedule = first.make_schedule(steps_per_epoch=10)
    lrs = [float(schedule(step)) for step in (0, 50, 100, 1999)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(1.2e-3)
    assert lrs[2] == pytest.approx(2.4e-3) and lrs[3] < 1e-5


def test_hard_distillation_from_a_tiny_teacher():
    student = MetaSpikeFormer(
        MetaSpikeFormerBackbone(**TINY), 3, distillation_head=True
    )
    teacher = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    y = np.array([0, 1, 2, 0])
    distiller = HardDistillationModel(student, teacher)
    loss_fn = HardDistillationLoss(3, alpha=0.5, label_smoothing=0.1)

    packed = ops.convert_to_numpy(distiller(x, training=True))
    logits, logits_kd, onehot = packed[:, :3], packed[:, 3:6], packed[:, 6:]
    teacher_labels = np.argmax(ops.convert_to_numpy(teacher(x)), axis=-1)
    np.testing.assert_array_equal(onehot, np.eye(3)[teacher_labels])

    def ce(z, target):
        z = z - z.max(-1, keepdims=True)
        return -(target * (z - np.log(np.exp(z).sum(-1, keepdims=True)))).sum(-1)

    smoothed = np.eye(3)[y] * 0.9 + 0.1 / 3
    expected = np.mean(
        0.5 * ce(logits, smoothed) + 0.5 * ce(logits_kd, np.eye(3)[teacher_labels])
    )
    np.testing.assert_allclose(float(loss_fn(y, packed)), expected, rtol=1e-5)

    _, stage_b = staged_recipes("meta_spikeformer_tiny_imagenet")
    # No warm-up so that the single step has a non-zero learning rate; eager
    # (one step: compiling would cost minutes on a small CPU).
    optimizer = stage_b.replace(warmup_epochs=0).make_optimizer(1, model=student)
    distiller.compile(optimizer=optimizer, loss=loss_fn, run_eagerly=True)

    teacher_before = [ops.convert_to_numpy(w) for w in teacher.weights]
    kd_before = ops.convert_to_numpy(student.head_kd.kernel)
    history = distiller.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(kd_before, ops.convert_to_numpy(student.head_kd.kernel))
    for before, after in zip(teacher_before, teacher.weights, strict=True):
        np.testing.assert_array_equal(before, ops.convert_to_numpy(after))
    assert tuple(student(x).shape) == (4, 3)  # inference: the mean of both heads


def test_distillation_needs_the_student_head():
    student = MetaSpikeFormer(MetaSpikeFormerBackbone(**TINY), 3)
    with pytest.raises(ValueError, match="distillation_head=True"):
        HardDistillationModel(student, keras.Sequential([keras.layers.Dense(3)]))
