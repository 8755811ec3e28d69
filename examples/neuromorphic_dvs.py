"""
Title: Spikformer on neuromorphic data: DVS128 Gesture and CIFAR10-DVS
Author: keras-spikformer developers
Date created: 2026/11/28
Last modified: 2026/12/07
Description: Download event-camera recordings, turn them into frames and train Spikformer-2-256 with the paper's recipe.
Accelerator: GPU (the full 106-epoch recipe); `--smoke` runs in under a minute on a CPU
"""

"""
## Introduction

An event camera (DVS) reports per-pixel brightness changes as a stream of
events `(t, x, y, polarity)` instead of frames. DVS128 Gesture holds 1,342
recordings of 29 people making 11 hand and arm gestures in front of a 128x128
sensor; CIFAR10-DVS holds 10,000 recordings of CIFAR-10 images moving on a
screen.

Spikes fit this data naturally. The recording is cut into T=16 slices with
the same number of events each, and the events of each slice are counted per
pixel and polarity: the frames are `[16, 128, 128, 2]`. Unlike the *direct
encoding* of static images, each time step of the network sees a different
frame (`encoding="frames"` in the preset), so the time steps carry the
motion. Cutting by event count rather than by time gives every frame the same
amount of signal whatever the speed of the motion.

The recipe (`spikformer_2_256_cifar10dvs`, 80.9% in the paper): AdamW lr 1e-3
at batch 16, 96 + 10 epochs with cosine decay, label smoothing 0.1, flips plus
geometric event-frame augmentation, and MixUp on half of the batches until
epoch 75. Small data sets overfit quickly; the augmentation is what keeps a
transformer honest on 9,000 training recordings.

Run `python examples/neuromorphic_dvs.py` (DVS128 Gesture is downloaded on
first use and trained with `spikformer_2_256_dvsgesture`), `--dataset
cifar10dvs` for CIFAR10-DVS (downloaded too), `--data-dir ROOT` for
recordings you already have, or `--smoke` to train a tiny model on a
synthetic CIFAR10-DVS written in the real file format.
"""

import argparse
import glob
import json
import os
import tempfile

import keras
import tensorflow as tf

from keras_spikformer import Spikformer
from keras_spikformer.data.augment import make_event_train_augment
from keras_spikformer.data.cifar10dvs_split import file_order
from keras_spikformer.data.dvs_downloads import dvs_dataset
from keras_spikformer.data.event_datasets import event_frames_dataset
from keras_spikformer.data.event_frames import integrate_events_to_frames
from keras_spikformer.data.events import read_events
from keras_spikformer.testing.synthetic_events import write_synthetic_cifar10dvs
from keras_spikformer.training.callbacks import MixupOffCallback
from keras_spikformer.training.recipe import Recipe

"""
## Download

`dvs_dataset` returns the folder of the recordings and how to read it. The
first time it downloads the published archives (CIFAR10-DVS: the authors' ten
class zips from figshare; DVS128 Gesture: tonic's copy on figshare, one
`.npy` per gesture, since IBM's own `DvsGesture.tar.gz` sits on a Box page
without a direct link), checks each against its published MD5, and extracts
them, refusing any entry that would land outside the folder, any link, and
archives larger than the published ones. They go to
`~/.cache/keras_spikformer/datasets/<name>` (or `$KERAS_SPIKFORMER_CACHE`, or
`--data-dir`); later runs read them offline. IBM's archive, downloaded by hand
into that folder's `downloads/`, is used instead when it is there. `KERAS_SPIKFORMER_OFFLINE=1` turns every download into an error, and
`KERAS_SPIKFORMER_MIRROR=URL` fetches `URL/<name>/<file>` instead (a local
mirror).

## One recording, by hand

CIFAR10-DVS lies as `ROOT/<class>/*.aedat` (AEDAT 2.0); IBM's DVS128 Gesture
as `ROOT/DvsGesture/userXX_<lighting>.aedat` (AEDAT 3.1, one recording holds
all 11 gestures; its CSV gives their time windows), tonic's copy converted to
`ROOT/<split>/<label>/*.npz`. `read_events` decodes one file into arrays of
timestamps, coordinates and polarities;
`integrate_events_to_frames` counts them into frames. Every frame holds the
same number of events (the last one takes the remainder).
"""


def show_one_recording(root, num_frames):
    pattern = os.path.join(root, "**", "*.aedat")
    files = glob.glob(pattern, recursive=True) or glob.glob(
        os.path.join(root, "**", "*.npz"), recursive=True
    )
    path = sorted(files)[0]
    events = read_events(path)
    frames = integrate_events_to_frames(
        events, num_frames, split_by="number", sensor_size=(128, 128)
    )
    per_frame = frames.sum(axis=(1, 2, 3)).astype(int)
    print(f"{os.path.relpath(path, root)}: {events['t'].size} events")
    print(f"frames {frames.shape}, events per frame {per_frame.tolist()}")
    return frames


"""
## The data set

`event_frames_dataset` does the same for every file, once: frames are cached
as `.npz` files (keyed on the file and the settings), so later epochs and runs
only read them. DVS128 Gesture comes with its split (23 users train, 6
test). CIFAR10-DVS has none: the package ships a fixed split (per class, a
seeded order of the 1000 published files, the first 90% train, the rest
test), the same on every machine; `--split-seed N` draws another. Frames are
block-summed when the model is smaller than the sensor (64x64 for the tiny
preset). The event augmentation works on batches and returns one-hot labels,
so the test labels are one-hot too.
"""


def make_pipelines(root, dataset, cache_dir, model, recipe, batch_size, split_seed):
    num_frames = model.backbone.num_timesteps
    options = dict(
        dataset=dataset,
        file_order=file_order(split_seed) if dataset == "cifar10dvs" else None,
        num_frames=num_frames,
        split_by=(recipe.frames or {}).get("split_by", "number"),
        cache_dir=cache_dir,
        image_size=tuple(model.backbone.image_shape[:2]),
        train_fraction=(recipe.frames or {}).get("train_split", 0.9),
    )
    train, classes, num_train = event_frames_dataset(root, split="train", **options)
    test, _, num_test = event_frames_dataset(root, split="test", **options)
    augment = make_event_train_augment(recipe, len(classes), seed=0)
    train = (
        train.batch(batch_size, drop_remainder=True)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = (
        test.batch(batch_size)
        .map(lambda frames, label: (frames, tf.one_hot(label, len(classes))))
        .prefetch(tf.data.AUTOTUNE)
    )
    print(f"{num_train} training and {num_test} test recordings, T={num_frames}")
    return augment, train, test, num_train // batch_size


"""
## Train, evaluate, save

The model and the training loop are the same as for images: only the input
(a sequence of frames) differs. As in the CIFAR-10 example, `--epochs`
shortens the recipe with warm-up, cooldown and the MixUp switch-off keeping
their share of the run.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "--dataset", choices=["dvsgesture", "cifar10dvs"], default="dvsgesture"
    )
    parser.add_argument(
        "--data-dir", default=None, help="recordings; default: download to the cache"
    )
    parser.add_argument("--split-seed", type=int, default=None, help="CIFAR10-DVS")
    parser.add_argument("--cache-dir", default=None, help="default: ~/.keras")
    parser.add_argument("--epochs", type=int, default=None, help="default: recipe")
    parser.add_argument("--batch-size", type=int, default=None, help="default: recipe")
    parser.add_argument("--preset", default=None, help="default: per dataset")
    parser.add_argument("--dtype", default=None, help="e.g. mixed_bfloat16")
    parser.add_argument("--output", default=None, help="where to write the results")
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run")
    args = parser.parse_args(argv)
    output = args.output or tempfile.mkdtemp(prefix="spikformer_dvs_")
    os.makedirs(output, exist_ok=True)
    if args.smoke:
        args.preset, args.epochs, args.batch_size = "spikformer_tiny_dvs", 1, 8
        args.dataset = "cifar10dvs"
        args.data_dir = write_synthetic_cifar10dvs(
            os.path.join(output, "cifar10dvs"), num_per_class=10, num_events=64
        )
        args.cache_dir = args.cache_dir or os.path.join(output, "frames")
    args.preset = args.preset or f"spikformer_2_256_{args.dataset}"
    kind, root = dvs_dataset(args.dataset, args.data_dir)  # downloads if missing
    keras.utils.set_random_seed(0)

    recipe, mixup_off = shorten(Recipe.from_preset(args.preset), args.epochs)
    batch_size = args.batch_size or recipe.global_batch_size
    overrides = {"dtype": args.dtype} if args.dtype else {}
    model = Spikformer.from_preset(args.preset, load_weights=False, **overrides)
    show_one_recording(root, model.backbone.num_timesteps)
    augment, train, test, steps = make_pipelines(
        root, kind, args.cache_dir, model, recipe, batch_size, args.split_seed
    )

    model.compile(
        optimizer=recipe.make_optimizer(
            steps, global_batch_size=batch_size, model=model
        ),
        loss=recipe.make_loss(),
        metrics=["accuracy"],
        jit_compile=keras.backend.backend() in ("tensorflow", "jax"),
    )
    model.fit(
        train,
        epochs=recipe.total_epochs(),
        steps_per_epoch=steps,
        validation_data=test,
        callbacks=[MixupOffCallback(augment, off_epoch=mixup_off)],
        verbose=2,
    )
    loss, accuracy = model.evaluate(test, verbose=0)
    print(f"test accuracy: {accuracy:.4f}  test loss: {loss:.4f}")
    metrics = {
        "preset": args.preset,
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "epochs": recipe.total_epochs(),
    }

    model.preset_metadata = {"description": f"{args.preset} trained on {args.dataset}"}
    preset_dir = os.path.join(output, "preset")
    model.save_to_preset(preset_dir, overwrite=True)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"saved the preset to {preset_dir} and the metrics to {output}")
    return metrics


if __name__ == "__main__":
    main()
