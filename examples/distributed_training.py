"""
Title: Data- and model-parallel Spikformer training
Author: keras-spikformer developers
Date created: 2026/12/01
Last modified: 2026/12/01
Description: Train a Spikformer on several devices with the same `model.fit`: data parallel on JAX and TensorFlow, a model-parallel layout for the large presets, multi-host starts, saving and reloading.
Accelerator: Several GPUs or TPUs; `--smoke --devices 2` runs on a CPU with virtual devices in under a minute
"""

"""
## Introduction

One device stops being enough for the ImageNet presets: a step of
Spikformer-8-768 at the paper's batch of 128 (x T=4 time steps) does not fit
in the memory, or the time, of a single accelerator. Keras 3 runs one model
on many devices with each backend's own engine, and `model.fit` stays as it is:

- **JAX**: `keras.distribution`. `DataParallel` replicates the variables and
  splits each batch; `ModelParallel` also shards variables over a "model"
  axis of a device mesh (tensor parallelism).
- **TensorFlow**: `tf.distribute.MirroredStrategy` (data parallel).

`keras_spikformer.training.distribute.distribution_for(mode, global_batch_size)`
picks the engine for the active backend and returns a plan: build and compile
the model under `plan.scope()`, then `fit`.

Run it as `KERAS_BACKEND=jax python examples/distributed_training.py --smoke
--devices 4` (or `KERAS_BACKEND=tensorflow ...`). `--devices N` creates N
virtual CPU devices, so every step runs on a laptop. The device count must be
fixed before the backend starts; this script therefore reads `--devices` and
sets `XLA_FLAGS=--xla_force_host_platform_device_count=N` (JAX) at the very
top, before importing Keras, unless `XLA_FLAGS` already names a device count.
On TensorFlow it splits the CPU into N logical devices instead. On real
accelerators, leave `--devices` out.
"""

import os
import sys


def _requested_devices(argv):
    """The value of `--devices N` (or `--devices=N`) in `argv`, else `None`."""
    for i, arg in enumerate(argv):
        if arg == "--devices" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--devices="):
            return int(arg.split("=", 1)[1])
    return None


_VIRTUAL_DEVICES = _requested_devices(sys.argv[1:])
if _VIRTUAL_DEVICES and "xla_force_host_platform_device_count" not in (
    os.environ.get("XLA_FLAGS", "")
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={_VIRTUAL_DEVICES}"
    ).strip()

import argparse
import tempfile

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_spikformer
from keras_spikformer.training.distribute import (
    distribution_for,
    get_layout_map,
    initialize_multi_host,
)
from keras_spikformer.training.recipe import Recipe


def use_virtual_cpu_devices(count):
    """TensorFlow: split the CPU into `count` logical devices (before any op)."""
    if keras.backend.backend() != "tensorflow" or not count:
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )


"""
## Multi-host starts (JAX)

With several hosts, each runs this same script; the processes must meet before
any computation. `initialize_multi_host` wraps `keras.distribution.initialize`:

```python
initialize_multi_host(
    job_addresses="10.0.0.1:1234",  # the coordinator, process 0
    num_processes=2,
    process_id=int(os.environ["HOST_INDEX"]),
)
```

or set `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`
and `KERAS_DISTRIBUTION_PROCESS_ID` in the launcher and call it without
arguments, as `main` below does when they are set. Afterwards
`keras.distribution.list_devices()` lists the devices of all hosts and the
plans below span them. Keras splits each global batch across the processes
(`auto_shard_dataset`), so every host feeds the same pipeline.

## Data

The scikit-learn digits (8x8, upsampled to 16x16, nothing to download), as in
the quick start. JAX shards *every* batch over the devices, the last one of
an evaluation pass included, so we keep whole global batches only.
"""


def load_data(global_batch_size, limit=None, seed=0):
    digits = load_digits()
    images = digits.images[..., None].astype("float32") / 16.0
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    targets = digits.target[:limit] if limit else digits.target
    images = images[: len(targets)]
    labels = keras.utils.to_categorical(targets, 10)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.2, random_state=seed, stratify=targets
    )

    def whole_batches(x, y):
        n = len(x) // global_batch_size * global_batch_size
        return x[:n], y[:n]

    return whole_batches(x_train, y_train), whole_batches(x_test, y_test)


"""
## The global batch and the learning rate

Data parallelism splits one *global* batch over the replicas. Keep the batch
per device fixed and the global batch grows with the device count; the
preset's recipe then says what happens to the learning rate: its
`lr_scaling_rule` is `"linear"` (rate x global batch / recipe batch) or
`"none"` (keep the rate). `Recipe.make_optimizer(..., global_batch_size=...)`
applies it, and `describe()` prints the effect.

## Data parallel training

`distribution_for` checks that the global batch splits evenly. The model must
be built and compiled under `plan.scope()`; on JAX, `fit`, `evaluate` and
`predict` must run under it too (the jitted step shards its state by the
active distribution); on TensorFlow they may, so we keep everything inside.
`plan.prepare(model)` turns on synchronised batch norm under
`MirroredStrategy` (each replica would otherwise normalise with its own slice
of the batch), and `plan.jit_compile` is `False` there: Keras does not run XLA
under `tf.distribute`.
"""


def train(plan, preset, recipe, data):
    (x_train, y_train), (x_test, y_test) = data
    batch = plan.global_batch_size
    steps = len(x_train) // batch
    print(plan.describe())
    print(recipe.describe(steps_per_epoch=steps, global_batch_size=batch))
    with plan.scope():
        model = plan.prepare(
            keras_spikformer.Spikformer.from_preset(preset, load_weights=False)
        )
        model.compile(
            optimizer=recipe.make_optimizer(
                steps, global_batch_size=batch, model=model
            ),
            loss=recipe.make_loss(),
            metrics=["accuracy"],
            jit_compile=plan.jit_compile,
        )
        model.fit(
            x_train,
            y_train,
            batch_size=batch,
            epochs=recipe.total_epochs(),
            validation_data=(x_test, y_test),
            verbose=2,
        )
        loss, accuracy = model.evaluate(x_test, y_test, batch_size=batch, verbose=0)
        predictions = model.predict(x_test, batch_size=batch, verbose=0)
    print(f"test accuracy {accuracy:.4f}, loss {loss:.4f}")
    return model, predictions


"""
## Model parallel layouts for the large presets (JAX)

`ModelParallel` needs a 2-D mesh, ("batch", "model"), and a `LayoutMap` from
variable paths to shardings. `get_layout_map(mesh)` shards each block
Megatron-style: `q`, `k`, `v` and `fc1` kernels split on their output axis
(with their bias and batch norm), `proj` and `fc2` on their input axis, so a
block needs one all-reduce per attention and one per MLP; the stem
convolutions split their output channels; the head is replicated. For
Spikformer-8-768 on 8 accelerators:

```python
plan = distribution_for("model_parallel", global_batch_size=128, model_axis_size=4)
with plan.scope():  # a (2, 4) mesh: 2 replicas of the model, each on 4 devices
    model = Spikformer.from_preset("spikformer_8_768_imagenet", dtype="mixed_bfloat16")
    model.compile(...)
    model.fit(...)
```

Each device then holds a quarter of every block (hidden 768 = 12 heads: 3 per
device). `show_layout` prints where each kernel of a model goes.
"""


def show_layout(model, layout_map):
    for variable in model.weights:
        if variable.path.endswith("kernel"):
            layout = layout_map[variable.path]
            where = "replicated" if layout is None else tuple(layout.axes)
            print(f"  {variable.path:32s} {where}")


"""
## Saving and reloading on one device

A `.keras` file holds plain arrays, whatever the layout it was trained with:
outside the scope it loads on one device.
"""


def save_and_reload(model, predictions, x_test, output):
    path = os.path.join(output, "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)  # no scope: one device
    difference = float(
        np.max(np.abs(reloaded.predict(x_test, verbose=0) - predictions))
    )
    same = difference <= 1e-5
    print(
        f"saved {path}; reloaded on one device: "
        f"{'identical predictions' if same else 'DIFFERENT predictions'} "
        f"(max difference {difference:.2e})"
    )
    if not same:
        raise SystemExit("the reloaded model disagrees with the trained one")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "--mode", default="data_parallel", choices=["data_parallel", "model_parallel"]
    )
    parser.add_argument("--preset", default="spikformer_tiny_digits")
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="N virtual CPU devices (read before the backend starts)",
    )
    parser.add_argument("--per-device-batch", type=int, default=8)
    parser.add_argument("--model-axis-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="recipe's if unset")
    parser.add_argument("--limit", type=int, default=None, help="use only N images")
    parser.add_argument("--output", default=None, help="where to write model.keras")
    parser.add_argument(
        "--smoke", action="store_true", help="1 epoch on 320 images, tiny preset"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.epochs, args.limit = "spikformer_tiny_digits", 1, 320

    use_virtual_cpu_devices(args.devices)
    if os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        initialize_multi_host()  # reads KERAS_DISTRIBUTION_* (see above)
    keras.utils.set_random_seed(0)
    devices = keras.distribution.list_devices()
    print(f"backend {keras.backend.backend()}, {len(devices)} devices: {devices}")

    # One plan to learn the replica count, then the global batch from it.
    probe = distribution_for(args.mode, model_axis_size=args.model_axis_size)
    global_batch = args.per_device_batch * probe.num_replicas
    plan = distribution_for(
        args.mode, global_batch_size=global_batch, model_axis_size=args.model_axis_size
    )
    recipe = Recipe.from_preset(args.preset)
    if args.epochs:
        recipe = recipe.replace(epochs=args.epochs, warmup_epochs=0)
    data = load_data(global_batch, limit=args.limit)
    model, predictions = train(plan, args.preset, recipe, data)
    if plan.distribution is not None and args.mode == "model_parallel":
        print("model-parallel layout:")
        show_layout(model, get_layout_map(plan.distribution.device_mesh))
    output = args.output or tempfile.mkdtemp(prefix="spikformer_distributed_")
    os.makedirs(output, exist_ok=True)
    return save_and_reload(model, predictions, data[1][0], output)


if __name__ == "__main__":
    main()
