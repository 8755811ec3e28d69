"""Hard knowledge distillation (DeiT-style) from any Keras teacher, as Meta-SpikeFormer's T=4 stage."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spikformer")
class HardDistillationLoss(keras.losses.Loss):
    """`(1 - alpha) * CE_smoothed(head, y) + alpha * CE(head_kd, argmax teacher)`.

    Reads the packed predictions of `HardDistillationModel`:
    `[logits | logits_kd | one-hot teacher label]` along the last axis.

    Args:
        num_classes: int, classes `K`.
        alpha: float in [0, 1], weight of the distillation term. Defaults to
            `0.5` (the reference's `distillation_alpha`).
        label_smoothing: float, smoothing of the ground-truth term. Defaults
            to `0.1`.
        **kwargs: `name`, `reduction`.

    Example:
    >>> loss = HardDistillationLoss(num_classes=1000)
    """

    def __init__(self, num_classes, alpha=0.5, label_smoothing=0.1, **kwargs):
        kwargs.setdefault("name", "hard_distillation")
        super().__init__(**kwargs)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]; got {alpha}.")
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        k = self.num_classes
        if y_pred.shape[-1] != 3 * k:
            raise ValueError(
                f"HardDistillationLoss expects [logits | logits_kd | teacher one-hot] "
                f"of width 3 x {k}; got {y_pred.shape[-1]}. Train a "
                "HardDistillationModel with it."
            )
        logits, logits_kd, teacher = (
            y_pred[:, :k],
            y_pred[:, k : 2 * k],
            y_pred[:, 2 * k :],
        )
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))  # integer labels
        target = ops.one_hot(labels, k, dtype=logits.dtype)
        target = target * (1.0 - self.label_smoothing) + self.label_smoothing / k
        base = keras.losses.categorical_crossentropy(target, logits, from_logits=True)
        distill = keras.losses.categorical_crossentropy(
            teacher, logits_kd, from_logits=True
        )
        return (1.0 - self.alpha) * base + self.alpha * distill

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "alpha": self.alpha,
                "label_smoothing": self.label_smoothing,
            }
        )
        return config


class HardDistillationModel(keras.Model):
    """Trains `student` (with a distillation head) against a frozen `teacher`.

    `call` returns `[logits | logits_kd | one-hot(argmax teacher(x))]`, which
    `HardDistillationLoss` splits; the teacher runs in inference mode and gets
    no gradient. Outside training both logit slots hold the student's
    inference output. After training, use the student itself (its inference
    output is the mean of both heads).

    Args:
        student: a classifier whose `training=True` call returns
            `(logits, logits_kd)`, e.g. `MetaSpikeFormer(...,
            distillation_head=True)`.
        teacher: any Keras model mapping the same inputs to `[batch, K]` logits
            or probabilities.
        **kwargs: `name`.

    Example:
    >>> distiller = HardDistillationModel(student, teacher)
    >>> distiller.compile(optimizer="adam", loss=HardDistillationLoss(10))
    >>> distiller.fit(images, labels, epochs=1)
    """

    def __init__(self, student, teacher, **kwargs):
        super().__init__(**kwargs)
        if not getattr(student, "distillation_head", False):
            raise ValueError(
                "The student needs a distillation head: build it with "
                "distillation_head=True (e.g. MetaSpikeFormer(backbone, K, "
                "distillation_head=True))."
            )
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False

    def call(self, inputs, training=None):
        # Always the packed layout (Keras builds losses from a symbolic,
        # non-training call); outside training both slots hold the student's
        # inference output, the mean of its heads.
        if training:
            logits, logits_kd = self.student(inputs, training=True)
        else:
            logits = logits_kd = self.student(inputs, training=False)
        teacher = ops.stop_gradient(self.teacher(inputs, training=False))
        k = logits.shape[-1]
        if teacher.shape[-1] != k:
            raise ValueError(
                f"The teacher predicts {teacher.shape[-1]} classes but the student "
                f"{k}; use a teacher with the student's classes."
            )
        labels = ops.one_hot(ops.argmax(teacher, axis=-1), k, dtype=logits.dtype)
        return ops.concatenate([logits, logits_kd, labels], axis=-1)


def staged_recipes(preset):
    """The two recipes of a preset trained in stages (Meta-SpikeFormer: T=1, then T=4).

    The preset's `recipe.json` is the first stage; its `"finetune"` entry
    holds the second (fine-tune at `num_timesteps` 4 with a distillation head
    and a teacher), whose missing keys are taken from the first.

    Args:
        preset: a zoo name or preset directory.

    Returns:
        `(first, second)` `Recipe`s; `second.extras` holds `num_timesteps`,
        `distillation_head` and `distillation` (type, alpha, teacher).

    Example:
    >>> stage_a, stage_b = staged_recipes("meta_spikeformer_15m_imagenet")
    >>> optimizer = stage_b.make_optimizer(steps_per_epoch=100, model=student)
    """
    from keras_spikformer.training.recipe import Recipe

    first = Recipe.from_preset(preset)
    second = first.extras.get("finetune")
    if not isinstance(second, dict):
        raise ValueError(
            f"Preset {preset!r} has a single-stage recipe (no 'finetune' entry in "
            "recipe.json); use Recipe.from_preset(preset)."
        )
    base = first.to_dict()
    base.pop("finetune", None)
    base.pop("description", None)
    return first, Recipe.from_dict(
        {**base, **second}, source=f"{first.source} (finetune)"
    )
