"""Training: the paper's recipe (optimizer, schedule, loss), callbacks, train/evaluate.

`train`, `evaluate` and `build_model` load on first use: they need the
tf.data pipelines (TensorFlow), which model code on JAX or PyTorch does not.
"""

from keras_spikformer.training.callbacks import MixupOffCallback
from keras_spikformer.training.lamb import TimmLamb
from keras_spikformer.training.recipe import Recipe
from keras_spikformer.training.schedules import WarmupCosineDecay

_TRAINER_NAMES = ("build_model", "evaluate", "train")

__all__ = ["MixupOffCallback", "Recipe", "TimmLamb", "WarmupCosineDecay", *_TRAINER_NAMES]


def __getattr__(name):
    if name in _TRAINER_NAMES:
        from keras_spikformer.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
