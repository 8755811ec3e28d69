"""Data- and model-parallel training on the active backend's own engine.

`distribution_for(mode, global_batch_size)` returns a `DistributionPlan`; build
and compile the model under `plan.scope()` and `model.fit` works unchanged:

- `none`: one device, a no-op plan (any backend).
- `data_parallel`: JAX `keras.distribution.DataParallel`; TensorFlow
  `tf.distribute.MirroredStrategy`.
- `model_parallel`: JAX `keras.distribution.ModelParallel` on a
  ("batch", "model") mesh with `get_layout_map`; not on TensorFlow (use JAX,
  or `data_parallel`).

The torch backend is not supported here (use JAX or TensorFlow).

How close is distributed training to one device? Measured on
`spikformer_tiny_digits` (16 random 16x16 images, global batch 16, SGD 0.1,
4 virtual CPU devices; `tests/test_distribute.py` asserts these):

- JAX `DataParallel` and `ModelParallel` (2 x 2 mesh): the program is one SPMD
  computation over global arrays, so batch norm sees the global batch exactly
  as on one device. Loss at step 1 is identical; weights after 3 steps
  differ by at most 1.5e-8 (the order of the cross-device sums).
- TensorFlow `MirroredStrategy`: each replica runs the model on its own slice
  of the batch, and Keras `BatchNormalization` normalises with each replica's
  OWN statistics unless `synchronized=True`. With synchronised batch norm (the
  default here, `sync_batch_norm=True`) the step-1 loss is identical and the
  weights after step 1 agree to 6e-8; after 3 steps they differ by 1.8e-3,
  because Keras' synchronised variance, E[x^2] - E[x]^2, rounds differently
  from the two-pass one and at step 2 that flips a spike (one device with the
  same formula flips it too when the batch is merely reordered). With
  per-replica statistics (`sync_batch_norm=False`, what PyTorch DDP without
  SyncBN, hence the reference, does) the step-1 loss differs by 3.7e-3 and
  the weights by 4.3e-3 after one step, 8.6e-3 after three: a different,
  noisier estimate of the batch statistics, not an error.

Spiking neurons threshold their membrane potential, so a rounding difference
can flip a spike; over long runs distributed and single-device training agree
statistically, not bit for bit.

Two TensorFlow specifics: Keras does not run XLA under `tf.distribute` (one
XLA cluster cannot reach the replicas' variables), so compile with
`jit_compile=plan.jit_compile` (False there); and call `plan.prepare(model)`
after building, which turns on synchronised batch norm (a no-op elsewhere).

Mixed precision (`dtype="mixed_bfloat16"`) is unaffected: variables, neuron
state and the loss stay float32 whatever the layout.
"""

import contextlib

import keras
import numpy as np

from keras_spikformer.models.spikformer.spikformer_layout import get_layout_map
from keras_spikformer.training.multi_host import initialize_multi_host  # noqa: F401

DISTRIBUTE_MODES = ("none", "data_parallel", "model_parallel")
BATCH_AXIS = "batch"
MODEL_AXIS = "model"

_ENGINES = {"jax", "tensorflow"}
# One MirroredStrategy per device set: two strategies in one process hand out
# the same collective instance keys, and TensorFlow then aborts the second
# one's all-reduces with "Shape mismatch in the collective instance".
_MIRRORED_STRATEGIES = {}


class DistributionPlan:
    """How a model is placed on devices: the scope to build it in, and checks.

    Made by `distribution_for`; not constructed directly.

    Attributes:
        mode: str, one of `DISTRIBUTE_MODES`.
        backend: str, the Keras backend the plan is for.
        num_replicas: int, data-parallel replicas the global batch is split over.
        num_devices: int, devices used.
        global_batch_size: int or `None`.
        jit_compile: bool, whether XLA may compile the train step under this
            plan (`False` for TensorFlow's `MirroredStrategy`).
        distribution: the `keras.distribution.Distribution` (JAX) or `None`.
        strategy: the `tf.distribute.Strategy` (TensorFlow) or `None`.
        sync_batch_norm: bool, batch statistics over the global batch.
    """

    def __init__(
        self,
        mode,
        backend,
        num_replicas=1,
        num_devices=1,
        global_batch_size=None,
        distribution=None,
        strategy=None,
        sync_batch_norm=True,
        mesh_shape=None,
    ):
        self.mode = mode
        self.backend = backend
        self.num_replicas = int(num_replicas)
        self.num_devices = int(num_devices)
        self.global_batch_size = global_batch_size
        self.distribution = distribution
        self.strategy = strategy
        self.sync_batch_norm = bool(sync_batch_norm)
        self.mesh_shape = mesh_shape
        self.jit_compile = strategy is None

    @property
    def per_replica_batch_size(self):
        """Examples each replica sees per step, or `None` without a batch size."""
        if self.global_batch_size is None:
            return None
        return self.global_batch_size // self.num_replicas

    @contextlib.contextmanager
    def scope(self):
        """Context manager to build, compile and fit the model under.

        JAX: makes the plan's `keras.distribution` the global one and restores
        the previous one (usually none) on exit. TensorFlow: the strategy's
        scope. `"none"`: does nothing. Yields the plan.
        """
        if self.distribution is not None:
            with self.distribution.scope():
                yield self
        elif self.strategy is not None:
            with self.strategy.scope():
                yield self
        else:
            yield self

    def prepare(self, model):
        """Adapts a model built under `scope()` to the plan; returns it.

        Under TensorFlow's `MirroredStrategy` with `sync_batch_norm`, turns on
        `synchronized` in every `BatchNormalization`, so batch statistics span
        the global batch as on one device and under JAX. Elsewhere a no-op
        (JAX computes on global arrays, so its statistics already do).
        """
        if self.strategy is not None and self.sync_batch_norm:
            for layer in model._flatten_layers(include_self=False):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model

    def describe(self):
        """One line saying which engine runs on which devices."""
        if self.mode == "none":
            return f"no distribution ({self.backend}, one device)"
        if self.strategy is not None:
            engine = (
                f"tf.distribute.MirroredStrategy over {self.num_devices} devices, "
                f"{'synchronised' if self.sync_batch_norm else 'per-replica'} "
                "batch norm, no XLA"
            )
        else:
            mesh = dict(
                zip(
                    self.distribution.device_mesh.axis_names,
                    self.distribution.device_mesh.shape,
                    strict=True,
                )
            )
            engine = (
                f"keras.distribution.{type(self.distribution).__name__} over "
                f"{self.num_devices} devices, mesh {mesh}"
            )
        batch = ""
        if self.global_batch_size is not None:
            batch = (
                f"; global batch {self.global_batch_size} = {self.num_replicas} "
                f"replicas x {self.per_replica_batch_size}"
            )
        return f"{self.mode} on {self.backend}: {engine}{batch}"

    def __repr__(self):
        return f"<DistributionPlan {self.describe()}>"


def distribution_for(
    mode,
    global_batch_size=None,
    devices=None,
    model_axis_size=None,
    sync_batch_norm=True,
):
    """The `DistributionPlan` for `mode` on the active Keras backend.

    Build AND compile the model under `plan.scope()`. On JAX, also call `fit`,
    `evaluate` and `predict` under it (the train step shards its state by the
    active distribution); on TensorFlow the model remembers its strategy, so
    `fit` may run inside or outside. Inside works for both.

    Args:
        mode: str, one of `DISTRIBUTE_MODES`; `None` means `"none"`.
        global_batch_size: int or `None`. Checked to be divisible by the
            number of data-parallel replicas.
        devices: list of devices or `None` for all: JAX device strings such as
            `"gpu:0"` (`keras.distribution.list_devices()`); TensorFlow device
            names (defaults to every GPU, else every logical CPU).
        model_axis_size: int or `None`, `model_parallel` only: devices per
            model replica. Defaults to the devices of one process (tensor
            parallelism within a host, data parallelism across hosts).
        sync_batch_norm: bool, TensorFlow only: batch statistics over the
            global batch (as on one device and under JAX). Defaults to `True`;
            `False` keeps per-replica statistics (as PyTorch DDP) and saves an
            all-reduce per batch norm. Applied by `plan.prepare(model)`.

    Returns:
        A `DistributionPlan`.

    Example:
    ```python
    plan = distribution_for(mode, global_batch_size=batch_size)
    print(plan.describe())
    with plan.scope():
        model = plan.prepare(build_model(preset, weights, num_classes, dtype))
        model.compile(
            optimizer=recipe.make_optimizer(steps, global_batch_size=batch_size),
            loss=recipe.make_loss(),
            metrics=["accuracy"],
            jit_compile=plan.jit_compile,
        )
        model.fit(train_ds, epochs=epochs)  # required inside on JAX
    ```
    """
    mode = "none" if mode is None else str(mode)
    if mode not in DISTRIBUTE_MODES:
        raise ValueError(
            f"Unknown distribute mode {mode!r}; expected one of {DISTRIBUTE_MODES}."
        )
    if model_axis_size is not None and mode != "model_parallel":
        raise ValueError(
            f"model_axis_size={model_axis_size} only applies to 'model_parallel', "
            f"not {mode!r}; drop it or use mode='model_parallel'."
        )
    backend = keras.backend.backend()
    if mode == "none":
        return DistributionPlan(mode, backend, global_batch_size=global_batch_size)
    if backend not in _ENGINES:
        raise ValueError(
            f"Distributed training ({mode!r}) is not supported on the {backend!r} "
            "backend here. Use KERAS_BACKEND=jax (data_parallel or model_parallel) "
            "or KERAS_BACKEND=tensorflow (data_parallel), or --distribute none."
        )
    if global_batch_size is not None and int(global_batch_size) < 1:
        raise ValueError(
            f"global_batch_size must be a positive int, got {global_batch_size!r}."
        )
    if backend == "jax":
        plan = _jax_plan(mode, global_batch_size, devices, model_axis_size)
    else:
        plan = _tensorflow_plan(mode, global_batch_size, devices, sync_batch_norm)
    _check_global_batch(plan)
    return plan


def _jax_plan(mode, global_batch_size, devices, model_axis_size):
    devices = list(devices or keras.distribution.list_devices())
    if mode == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=devices)
        return DistributionPlan(
            mode,
            "jax",
            num_replicas=len(devices),
            num_devices=len(devices),
            global_batch_size=global_batch_size,
            distribution=distribution,
            mesh_shape=(len(devices),),
        )
    import jax

    if model_axis_size is None:
        model_axis_size = max(1, len(devices) // jax.process_count())
    model_axis_size = int(model_axis_size)
    if model_axis_size < 1 or len(devices) % model_axis_size:
        raise ValueError(
            f"model_axis_size={model_axis_size} must be a positive divisor of the "
            f"{len(devices)} devices (the mesh is devices/model_axis_size "
            "replicas x model_axis_size); choose one of "
            f"{[d for d in range(1, len(devices) + 1) if len(devices) % d == 0]}."
        )
    shape = (len(devices) // model_axis_size, model_axis_size)
    mesh = keras.distribution.DeviceMesh(
        shape=shape,
        axis_names=(BATCH_AXIS, MODEL_AXIS),
        devices=np.asarray(devices, dtype=object).reshape(shape),
    )
    distribution = keras.distribution.ModelParallel(
        layout_map=get_layout_map(mesh), batch_dim_name=BATCH_AXIS
    )
    return DistributionPlan(
        mode,
        "jax",
        num_replicas=shape[0],
        num_devices=len(devices),
        global_batch_size=global_batch_size,
        distribution=distribution,
        mesh_shape=shape,
    )


def _tensorflow_plan(mode, global_batch_size, devices, sync_batch_norm):
    if mode == "model_parallel":
        raise ValueError(
            "model_parallel is not available on the TensorFlow backend (Keras "
            "shards variables with keras.distribution.ModelParallel on JAX only). "
            "Use KERAS_BACKEND=jax for model_parallel, or --distribute "
            "data_parallel on TensorFlow."
        )
    import tensorflow as tf

    if devices is None:
        devices = tf.config.list_logical_devices("GPU") or (
            tf.config.list_logical_devices("CPU")
        )
        devices = [d.name for d in devices]
    key = tuple(devices)
    if key not in _MIRRORED_STRATEGIES:
        _MIRRORED_STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=key)
    strategy = _MIRRORED_STRATEGIES[key]
    return DistributionPlan(
        mode,
        "tensorflow",
        num_replicas=strategy.num_replicas_in_sync,
        num_devices=len(devices),
        global_batch_size=global_batch_size,
        strategy=strategy,
        sync_batch_norm=sync_batch_norm,
        mesh_shape=(strategy.num_replicas_in_sync,),
    )


def _check_global_batch(plan):
    batch, replicas = plan.global_batch_size, plan.num_replicas
    if batch is None or int(batch) % replicas == 0:
        return
    lower = int(batch) // replicas * replicas
    raise ValueError(
        f"The global batch {batch} does not split evenly over the {replicas} "
        f"data-parallel replicas of {plan.mode} on {plan.num_devices} devices. "
        f"Use a multiple of {replicas} (e.g. --batch-size "
        f"{lower or replicas} or {lower + replicas}), or fewer devices."
    )
