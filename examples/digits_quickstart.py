"""
Title: Spikformer quick start on handwritten digits
Author: keras-spikformer developers
Date created: 2026/11/28
Last modified: 2026/11/28
Description: Build a tiny Spikformer preset, train it on scikit-learn's digits, evaluate, save and reload.
Accelerator: None (about a minute on a 2-core CPU)
"""

"""
## Introduction

Spikformer (Zhou et al., ICLR 2023) is a transformer whose neurons fire binary
spikes. This example trains the tiny `spikformer_tiny_digits` preset on the
8x8 digits that ship with scikit-learn (nothing is downloaded), reports the
test accuracy and checks that a `.keras` file reloads to the same predictions.

Run it with `python examples/digits_quickstart.py [--epochs N] [--output DIR]`.
"""

import argparse
import os
import tempfile
import time

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_spikformer

"""
## Data

The digits are 8x8 grey images with values 0..16; we give them as 8-bit
pixels (0..255), like any image file. The preset's preprocessor does the rest
inside `fit`, `evaluate` and `predict`: it upsamples them to the model's 16x16
(nearest neighbour, so the patch-splitting stem with patch size 4 makes a 4x4
grid of tokens) and rescales them to [0, 1].
"""


def load_data(seed=0, limit=None):
    digits = load_digits()
    images = np.round(digits.images[..., None] * (255.0 / 16.0)).astype("uint8")
    labels = digits.target.astype("int32")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=labels
    )


"""
## Model

`from_preset` builds the architecture from the zoo. The preset ships trained
weights too; `load_weights=False` starts from fresh ones, to train here.
"""


def build_model(learning_rate):
    model = keras_spikformer.Spikformer.from_preset(
        "spikformer_tiny_digits", load_weights=False
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    return model


"""
## Train, evaluate, save and reload
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--limit", type=int, default=None, help="use only N images")
    parser.add_argument("--output", default=None, help="where to write model.keras")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    x_train, x_test, y_train, y_test = load_data(limit=args.limit)
    model = build_model(args.learning_rate)
    start = time.time()
    model.fit(
        x_train,
        y_train,
        validation_data=(x_test, y_test),
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2,
    )
    seconds = time.time() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(
        f"test accuracy: {accuracy:.4f}  test loss: {loss:.4f}  "
        f"({args.epochs} epochs in {seconds:.0f} s, backend {keras.backend.backend()})"
    )

    output = args.output or tempfile.mkdtemp(prefix="spikformer_digits_")
    path = os.path.join(output, "model.keras")
    os.makedirs(output, exist_ok=True)
    model.save(path)
    reloaded = keras.saving.load_model(path)
    # Two separately compiled predict functions may sum in another order: the
    # logits then agree to float rounding (a flipped spike would show as ~1e-2).
    difference = np.max(
        np.abs(model.predict(x_test, verbose=0) - reloaded.predict(x_test, verbose=0))
    )
    same = bool(difference <= 1e-5)
    print(
        f"saved {path}; reloaded model gives identical predictions: {same} "
        f"(max logit difference {difference:.1e})"
    )
    if not same:
        raise SystemExit("reloaded model disagrees with the trained one")
    return accuracy


if __name__ == "__main__":
    main()
