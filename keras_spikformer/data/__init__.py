"""Data pipelines: image datasets, neuromorphic event data, the recipe's augmentation."""

from keras_spikformer.data.augment import (
    EvalPreprocess,
    TrainAugment,
    make_eval_preprocess,
    make_event_train_augment,
    make_train_augment,
)
from keras_spikformer.data.erasing import RandomErasing
from keras_spikformer.data.event_datasets import event_frames_dataset
from keras_spikformer.data.event_frames import (
    integrate_events_to_frames,
    integrate_to_frames_cached,
)
from keras_spikformer.data.events import read_events
from keras_spikformer.data.image_datasets import (
    ImageData,
    digits,
    image_folder,
    tfds_images,
)
from keras_spikformer.data.image_pipeline import eval_batches, train_batches
from keras_spikformer.data.mixing import MixUpCutMix
from keras_spikformer.data.rand_augment import RandAugment
from keras_spikformer.data.registry import load_dataset
from keras_spikformer.data.time_window_frames import (
    TimeWindowFramer,
    integrate_events_by_time_window,
)

__all__ = [
    "EvalPreprocess",
    "MixUpCutMix",
    "RandAugment",
    "RandomErasing",
    "TimeWindowFramer",
    "TrainAugment",
    "eval_batches",
    "train_batches",
    "ImageData",
    "digits",
    "event_frames_dataset",
    "image_folder",
    "integrate_events_by_time_window",
    "integrate_events_to_frames",
    "integrate_to_frames_cached",
    "load_dataset",
    "make_eval_preprocess",
    "make_event_train_augment",
    "make_train_augment",
    "read_events",
    "tfds_images",
]
