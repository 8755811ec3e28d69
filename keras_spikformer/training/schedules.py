"""Learning-rate schedules of the Spikformer training recipe."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spikformer")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, cosine decay, then a constant floor (the cooldown).

    This is timm's `CosineLRScheduler` (one cycle, `warmup_t`, `lr_min`,
    followed by `cooldown_epochs` at `lr_min`) as the reference trained with,
    evaluated per optimizer step instead of per epoch:

    - `step < warmup_steps`: `warmup_learning_rate + step / warmup_steps *
      (learning_rate - warmup_learning_rate)`.
    - then cosine: `min_learning_rate + (learning_rate - min_learning_rate) *
      (1 + cos(pi * t / decay_steps)) / 2`, with `t = step` (timm's default,
      `warmup_prefix=False`: the warm-up replaces the first part of the cosine
      period, so the cosine already starts slightly below `learning_rate`) or
      `t = step - warmup_steps` (`warmup_prefix=True`: the full cosine follows
      the warm-up).
    - once `t >= decay_steps`: `min_learning_rate` for every later step, which
      is timm's cooldown (the reference trains `epochs + cooldown_epochs`).

    timm updates the rate once per epoch (`t_in_epochs=True`), so it is a
    staircase; this schedule is the smooth version: with steps counted as
    `epoch * steps_per_epoch` it equals timm's value at the start of every
    epoch and interpolates in between.

    Args:
        learning_rate: float. Peak rate, reached at the end of the warm-up.
        decay_steps: int > 0. Length of the cosine period in steps (timm's
            `t_initial`, i.e. `epochs * steps_per_epoch`).
        warmup_steps: int, defaults to `0`. Steps of linear warm-up.
        warmup_learning_rate: float, defaults to `0.0`. Rate at step 0.
        min_learning_rate: float, defaults to `0.0`. Floor reached at the end
            of the cosine and kept during the cooldown.
        warmup_prefix: bool, defaults to `False`. Whether the cosine period
            starts after the warm-up (`True`) or at step 0 (timm's default).
        name: string, defaults to `"WarmupCosineDecay"`.

    Example:
    ```python
    schedule = WarmupCosineDecay(
        learning_rate=5e-4, decay_steps=300 * 390, warmup_steps=20 * 390,
        warmup_learning_rate=1e-5, min_learning_rate=1e-5,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    ```
    """

    def __init__(
        self,
        learning_rate,
        decay_steps,
        warmup_steps=0,
        warmup_learning_rate=0.0,
        min_learning_rate=0.0,
        warmup_prefix=False,
        name="WarmupCosineDecay",
    ):
        super().__init__()
        if decay_steps is None or int(decay_steps) <= 0:
            raise ValueError(
                f"`decay_steps` must be a positive number of steps, got "
                f"{decay_steps!r}. Pass epochs * steps_per_epoch."
            )
        if warmup_steps is None or int(warmup_steps) < 0:
            raise ValueError(
                f"`warmup_steps` must be >= 0, got {warmup_steps!r}; use 0 for "
                "no warm-up."
            )
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.warmup_learning_rate = float(warmup_learning_rate)
        self.min_learning_rate = float(min_learning_rate)
        self.warmup_prefix = bool(warmup_prefix)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.learning_rate
        floor = self.min_learning_rate
        warmup = float(max(self.warmup_steps, 1))
        warm = self.warmup_learning_rate + (peak - self.warmup_learning_rate) * (
            step / warmup
        )
        t = step - self.warmup_steps if self.warmup_prefix else step
        progress = ops.clip(t / float(self.decay_steps), 0.0, 1.0)
        cosine = floor + 0.5 * (peak - floor) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < float(self.warmup_steps), warm, cosine)

    @property
    def total_steps(self):
        """Step at which the rate reaches `min_learning_rate` for good."""
        extra = self.warmup_steps if self.warmup_prefix else 0
        return self.decay_steps + extra

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "decay_steps": self.decay_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_learning_rate": self.warmup_learning_rate,
            "min_learning_rate": self.min_learning_rate,
            "warmup_prefix": self.warmup_prefix,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
