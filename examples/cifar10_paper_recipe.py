"""
Title: Training Spikformer on CIFAR-10 with the paper's recipe
Author: keras-spikformer developers
Date created: 2026/11/28
Last modified: 2026/12/07
Description: Train Spikformer-4-384 on CIFAR-10 from TFDS with the paper's optimizer, schedule, augmentation and loss.
Accelerator: GPU (the full 310-epoch recipe); `--smoke` runs in under a minute on a CPU
"""

"""
## Introduction

Spikformer-4-384 reaches 95.19% top-1 on CIFAR-10 in the paper (Zhou et al.,
ICLR 2023) with T=4 time steps. This example reproduces its training set-up
with the pieces of `keras_spikformer.training`:

- **AdamW** (lr 5e-4, weight decay 0.06, none on biases and batch-norm
  parameters) with a **warm-up then cosine** schedule, 300 + 10 epochs;
- **label smoothing 0.1**: with MixUp and strong augmentation, hard targets
  make a small-data model over-confident;
- **RandAugment, MixUp (off after epoch 200), random erasing, padded random
  crops and flips**, run batch-wise inside `tf.data`.

The model uses *direct encoding*: the same normalised image enters at each of
the T time steps, and the first convolution and LIF neuron of the stem turn
it into spikes. More time steps give the neurons more chances to fire (a finer
rate code) at a cost linear in T.

Run `python examples/cifar10_paper_recipe.py` (CIFAR-10 is downloaded on
first use), or `--smoke` to go through every step on 16 random images with a
tiny preset.
"""

import argparse
import json
import os
import tempfile

import keras
import tensorflow as tf

from keras_spikformer import Spikformer
from keras_spikformer.data.augment import make_eval_preprocess, make_train_augment
from keras_spikformer.data.image_datasets import tfds_images
from keras_spikformer.training.callbacks import MixupOffCallback
from keras_spikformer.training.recipe import Recipe

"""
## Data

The dataset is called by name. The first time, TensorFlow Datasets downloads
CIFAR-10 (about 160 MB) and prepares it in its data directory
(`~/tensorflow_datasets`, or `$TFDS_DATA_DIR`, or `--data-dir DIR`), with its
progress bars; later runs read the prepared copy and never touch the network.
With `KERAS_SPIKFORMER_OFFLINE=1` a missing dataset is an error instead of a
download (then prepare it elsewhere with `tfds build cifar10 --data_dir DIR`
and copy `DIR` over). `tfds_images` yields unbatched `(image, label)` pairs
with pixels in 0..255; the augmentation normalises them, a batch at a time.
"""


def load_cifar10(data_dir, image_size, smoke):
    if not smoke:
        return tfds_images("cifar10", data_dir, image_size)
    import tensorflow_datasets as tfds

    # Random images with CIFAR-10's features: the real code path, no files.
    with tfds.testing.mock_data(num_examples=16):
        return tfds_images("cifar10", data_dir, image_size)


"""
## The recipe

Every zoo preset ships the `recipe.json` of its reference run. `--epochs`
shortens it: warm-up, cooldown and the MixUp switch-off keep their share of
the run, so a 30-epoch try-out has the shape of the 310-epoch original.
"""


def shorten(recipe, epochs):
    """`(recipe, mixup_off_epoch)` for a run of `epochs` epochs in all."""
    mixup_off = recipe.augment.get("mixup_off_epoch") or 0
    if epochs is None:
        return recipe, mixup_off
    scale = epochs / recipe.total_epochs()
    cooldown = round(recipe.cooldown_epochs * scale)
    shorter = recipe.replace(
        epochs=max(1, epochs - cooldown),
        warmup_epochs=round(recipe.warmup_epochs * scale),
        cooldown_epochs=cooldown,
    )
    return shorter, round(mixup_off * scale)


"""
## Input pipelines

The augmentation works on whole batches (vectorised ops), so batch first,
then map. Dropping the last partial batch keeps every step the same shape,
which XLA compiles once.
"""


def make_pipelines(data, recipe, image_size, batch_size):
    augment = make_train_augment(recipe, image_size, data.num_classes, seed=0)
    preprocess = make_eval_preprocess(recipe, image_size, data.num_classes)
    train = (
        data.train.shuffle(min(data.num_train, 50_000), seed=0)
        .batch(batch_size, drop_remainder=True)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = data.test.batch(batch_size).map(preprocess).prefetch(tf.data.AUTOTUNE)
    return augment, train, test


"""
## Model, training, evaluation

`load_weights=False` starts from fresh weights. The reference trained in
mixed precision: pass `--dtype mixed_bfloat16` on an accelerator (the
neurons still integrate their membrane potentials in float32). The schedule
counts optimizer steps, so it needs the steps per epoch. `MixupOffCallback`
flips a variable that the augmentation reads at every batch, which turns
MixUp off for the last epochs without rebuilding the pipeline.

`save_to_preset` writes a directory that `Spikformer.from_preset` reads back;
we add the recipe so that `Recipe.from_preset` works on it too.
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "--data-dir", default=None, help="TFDS data directory; default: TFDS's"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: recipe")
    parser.add_argument("--batch-size", type=int, default=None, help="default: recipe")
    parser.add_argument("--preset", default="spikformer_4_384_cifar10")
    parser.add_argument("--dtype", default=None, help="e.g. mixed_bfloat16")
    parser.add_argument("--output", default=None, help="where to write the results")
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.epochs, args.batch_size = "spikformer_tiny_cifar", 1, 8
    output = args.output or tempfile.mkdtemp(prefix="spikformer_cifar10_")
    os.makedirs(output, exist_ok=True)
    keras.utils.set_random_seed(0)

    recipe, mixup_off = shorten(Recipe.from_preset(args.preset), args.epochs)
    batch_size = args.batch_size or recipe.global_batch_size
    overrides = {"dtype": args.dtype} if args.dtype else {}
    model = Spikformer.from_preset(args.preset, load_weights=False, **overrides)
    image_size = tuple(model.backbone.image_shape[:2])
    data_dir = output if args.smoke else args.data_dir  # None: TFDS's own
    data = load_cifar10(data_dir, image_size, args.smoke)
    augment, train, test = make_pipelines(data, recipe, image_size, batch_size)
    steps = data.num_train // batch_size

    model.compile(
        optimizer=recipe.make_optimizer(
            steps, global_batch_size=batch_size, model=model
        ),
        loss=recipe.make_loss(),
        metrics=["accuracy"],
        jit_compile=keras.backend.backend() in ("tensorflow", "jax"),
    )
    recipe.summary(steps_per_epoch=steps, global_batch_size=batch_size)
    model.fit(
        train,
        epochs=recipe.total_epochs(),
        steps_per_epoch=steps,
        validation_data=test,
        callbacks=[MixupOffCallback(augment, off_epoch=mixup_off)],
        verbose=2,
    )
    loss, accuracy = model.evaluate(test, verbose=0)
    metrics = {
        "preset": args.preset,
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "epochs": recipe.total_epochs(),
        "batch_size": batch_size,
    }
    print(f"test accuracy: {accuracy:.4f}  test loss: {loss:.4f}")

    model.preset_metadata = {"description": f"{args.preset} trained on CIFAR-10"}
    preset_dir = os.path.join(output, "preset")
    model.save_to_preset(preset_dir, overwrite=True)
    with open(os.path.join(preset_dir, "recipe.json"), "w") as f:
        json.dump(recipe.to_dict(), f, indent=2)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"saved the preset to {preset_dir} and the metrics to {output}")
    return metrics


if __name__ == "__main__":
    main()
