"""Training: the paper's recipe (optimizer, schedule, loss), callbacks, train/evaluate."""

from keras_spikformer.training.callbacks import MixupOffCallback
from keras_spikformer.training.recipe import Recipe
from keras_spikformer.training.schedules import WarmupCosineDecay
from keras_spikformer.training.trainer import build_model, evaluate, train

__all__ = [
    "MixupOffCallback",
    "Recipe",
    "WarmupCosineDecay",
    "build_model",
    "evaluate",
    "train",
]
