"""
Title: Fine-tuning a pretrained Spikformer with a new classification head
Author: keras-spikformer developers
Date created: 2026/11/28
Last modified: 2026/11/28
Description: Reuse a trained Spikformer backbone for a new 5-class task: train a fresh head first, then fine-tune everything.
Accelerator: None (about a minute on a 2-core CPU)
"""

"""
## Introduction

A trained backbone has learned spike patterns that are useful beyond its own
labels. Here we take `spikformer_tiny_digits` (trained on scikit-learn's
digits, 96.4% test accuracy) and teach it a new task with a different number
of classes: the digits grouped in pairs, {0, 1} -> 0, {2, 3} -> 1, ... so 5
classes. The recipe is the classic two-stage one:

1. **Frozen backbone, new head.** A freshly initialised head sends random
   gradients back; training it alone first keeps them from scrambling the
   pretrained weights.
2. **Everything, with a lower learning rate**, to adapt the features gently.

Nothing is downloaded: the digits ship with scikit-learn. Run it with
`python examples/finetune_new_head.py [--output DIR]`.
"""

import argparse
import os
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_spikformer import Spikformer
from keras_spikformer.data.image_datasets import digits

"""
## Data

`digits(16)` gives the 8x8 images upsampled to the preset's 16x16, with grey
levels 0..255 and the same stratified split the preset was trained on (so
the test images are unseen by the backbone too). We hand them over as they
are: the preset's preprocessor (inside `fit`, `evaluate` and `predict`)
divides by 255. The model uses direct encoding: the same image is presented
at both of its T=2 time steps.
"""

NUM_CLASSES = 5


def load_pairs(limit=None):
    data = digits(16)
    arrays = []
    for split, size in ((data.train, data.num_train), (data.test, data.num_test)):
        images, labels = next(iter(split.batch(size)))
        images, labels = images.numpy(), labels.numpy() // 2
        arrays += [images[:limit], labels[:limit]]
    return arrays


"""
## A new head on a pretrained backbone

`from_preset` with `num_classes=5` loads every weight whose shape fits and
initialises the others: only the head's kernel and bias. It names them in a
warning, which we print.
"""


def build_model():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = Spikformer.from_preset(
            "spikformer_tiny_digits", num_classes=NUM_CLASSES
        )
    for warning in caught:
        print(f"from_preset: {warning.message}")
    return model


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=keras.backend.backend() in ("tensorflow", "jax"),
    )


"""
## Two training stages

Setting `model.backbone.trainable = False` freezes its weights and also runs
its batch normalisation in inference mode, so the pretrained statistics stay
put. Changing `trainable` only takes effect after `compile`, hence a compile
per stage. The second stage uses a fiftieth of the head's learning rate.
"""


def train_in_two_stages(model, data, head_epochs, finetune_epochs, lr, batch_size):
    x_train, y_train, x_test, y_test = data
    fit = dict(
        x=x_train,
        y=y_train,
        batch_size=batch_size,
        validation_data=(x_test, y_test),
        verbose=2,
    )
    compile_model(model, lr)
    results = {"new head": model.evaluate(x_test, y_test, verbose=0)[1]}

    model.backbone.trainable = False
    compile_model(model, lr)
    model.fit(epochs=head_epochs, **fit)
    results["head trained"] = model.evaluate(x_test, y_test, verbose=0)[1]

    model.backbone.trainable = True
    compile_model(model, lr / 50)
    model.fit(epochs=finetune_epochs, **fit)
    results["fine-tuned"] = model.evaluate(x_test, y_test, verbose=0)[1]
    return results


"""
## Save and reload

`save_to_preset` writes a directory that `from_preset` accepts in place of a
zoo name; its config holds the new head size. We replace the metadata carried
over from the zoo preset, which describes the original 10-class weights.
"""


def save_and_reload(model, output, x_test, accuracy):
    output = output or tempfile.mkdtemp(prefix="spikformer_finetune_")
    preset_dir = os.path.join(output, "digit_pairs")
    model.preset_metadata = {
        "description": "spikformer_tiny_digits fine-tuned on digit pairs (5 classes)",
        "test_accuracy": float(accuracy),
    }
    model.save_to_preset(preset_dir, overwrite=True)
    reloaded = Spikformer.from_preset(preset_dir)
    same = np.allclose(
        model.predict(x_test, verbose=0), reloaded.predict(x_test, verbose=0), atol=1e-5
    )
    print(f"saved {preset_dir}; reloaded preset gives the same predictions: {same}")
    if not same:
        raise SystemExit("the reloaded preset disagrees with the fine-tuned model")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="use only N images")
    parser.add_argument("--output", default=None, help="where to write the preset")
    parser.add_argument("--smoke", action="store_true", help="fewer epochs and images")
    args = parser.parse_args(argv)
    if args.smoke:
        args.head_epochs, args.finetune_epochs, args.limit = 1, 1, 256
    keras.utils.set_random_seed(0)
    data = load_pairs(args.limit)
    model = build_model()
    start = time.time()
    results = train_in_two_stages(
        model,
        data,
        args.head_epochs,
        args.finetune_epochs,
        args.learning_rate,
        args.batch_size,
    )
    for stage, accuracy in results.items():
        print(f"test accuracy, {stage}: {accuracy:.4f}")
    print(f"both stages took {time.time() - start:.0f} s")
    save_and_reload(model, args.output, data[2], results["fine-tuned"])
    return results


if __name__ == "__main__":
    main()
