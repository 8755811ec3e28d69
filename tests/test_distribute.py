"""Data- and model-parallel training against one device.

The device count must be fixed before a backend starts, so the multi-device
checks run in a subprocess with 4 virtual CPU devices (JAX:
`--xla_force_host_platform_device_count=4`; TensorFlow: 4 logical CPUs). Each
outer pytest pass runs the subprocess of its own backend, so the JAX CI job
tests `keras.distribution` and the TensorFlow job tests `MirroredStrategy`.

What the subprocess compares: `spikformer_tiny_digits` with identical initial
weights, the same 16 random images as one global batch, SGD(0.1); the loss at
step 1 and every weight after 1 and 3 steps. Measured (4 devices, float32):

- JAX DataParallel / ModelParallel (2 x 2 mesh): step-1 loss identical,
  weights within 1.5e-8 after 3 steps: only the order of cross-device sums
  differs, and batch norm sees the global batch because JAX computes on
  global arrays. Tolerance 1e-5.
- TF MirroredStrategy, synchronised batch norm (the plan's default): step-1
  loss identical, weights within 6e-8 after step 1 (tolerance 1e-5), but
  1.8e-3 after 3 steps (tolerance 1e-2). The step itself is exact; Keras'
  synchronised batch norm computes var = E[x^2] - E[x]^2, whose rounding
  differs from one device's two-pass variance, and at step 2 that flips a
  spike (the neuron thresholds). One device shows the same flip: with that
  formula, merely reordering the 16 images moves the step-2 loss from 2.27460
  to 2.27346, exactly the distributed value. No XLA under tf.distribute
  (Keras' rule: one XLA cluster cannot reach the replicas' variables), so the
  TF reference is compiled without XLA too.
- TF MirroredStrategy, per-replica batch norm (`sync_batch_norm=False`, Keras'
  default, 4 images per replica): step-1 loss differs by 3.7e-3, weights by
  4.3e-3 after step 1 (8.6e-3 after 3 steps, measured once; only step 1 runs
  here): a different (noisier) estimate of the batch statistics, asserted to
  be there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_spikformer.training.distribute import (
    DISTRIBUTE_MODES,
    distribution_for,
    get_layout_map,
    initialize_multi_host,
)

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
ENGINES = ("jax", "tensorflow")
NUM_DEVICES = 4

WORKER = r"""
import json, os, sys
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf  # logical devices before the runtime starts
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES)
import warnings
warnings.simplefilter("ignore")
import keras
import numpy as np
from keras_spikformer import Spikformer
from keras_spikformer.training.distribute import distribution_for

backend = keras.backend.backend()
out = {"devices": len(keras.distribution.list_devices())}
rng = np.random.default_rng(0)
x = rng.uniform(size=(48, 16, 16, 1)).astype("float32")
x[16:] = np.concatenate([x[:16]] * 2)
y = np.tile(rng.integers(0, 10, 16), 3)

def run(plan, weights, dtype=None, steps=3):
    # Steps 1..steps on the same global batch of 16: (model, step-1 loss, weights).
    with plan.scope():
        model = plan.prepare(Spikformer.from_preset(
            "spikformer_tiny_digits", load_weights=False, dtype=dtype,
            preprocessor=None))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=plan.jit_compile and backend == "jax")
        if weights is not None:
            model.set_weights(weights)
        loss = model.fit(x[:16], y[:16], batch_size=16, verbose=0).history["loss"][0]
        step1 = model.get_weights()
        if steps > 1:
            model.fit(x[16:16 * steps], y[16:16 * steps], batch_size=16,
                      shuffle=False, verbose=0)
    return model, float(loss), step1

def max_difference(weights, others):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(weights, others))

def compare(name, plan, reference, steps=3):
    model, loss, step1 = run(plan, reference["w0"], steps=steps)
    out[name] = {
        "loss": abs(loss - reference["loss"]),
        "weights_step1": max_difference(step1, reference["step1"]),
        "weights": max_difference(model.get_weights(),
                                  reference["w3" if steps == 3 else "step1"]),
        "describe": plan.describe(),
    }
    return model

keras.utils.set_random_seed(0)
single = distribution_for("none")
with single.scope():
    w0 = Spikformer.from_preset("spikformer_tiny_digits", load_weights=False).get_weights()
model, loss, step1 = run(single, w0)
reference = {"w0": w0, "step1": step1, "w3": model.get_weights(), "loss": loss}

if backend == "jax":
    compare("data_parallel", distribution_for("data_parallel", 16), reference)
    plan = distribution_for("model_parallel", 16, model_axis_size=2)
    model = compare("model_parallel", plan, reference)
    kernel = {v.path: v for v in model.weights}["block_0/mlp/fc1/dense/kernel"]
    out["fc1_spec"] = [a for a in kernel.value.sharding.spec]
else:
    plan = distribution_for("data_parallel", 16)
    model = compare("data_parallel", plan, reference)
    unsynced = distribution_for("data_parallel", 16, sync_batch_norm=False)
    compare("per_replica_bn", unsynced, reference, steps=1)
with plan.scope():
    predicted = model.predict(x[:16], verbose=0)
model.save(sys.argv[1])

mixed, loss, _ = run(distribution_for("data_parallel", 16), w0, "mixed_bfloat16", 1)
out["mixed"] = {"loss": loss, "float32_loss": reference["loss"],
                "variable_dtypes": sorted({v.dtype for v in mixed.weights})}

loaded = keras.saving.load_model(sys.argv[1])  # outside any scope: one device
out["reloaded"] = float(np.max(np.abs(loaded.predict(x[:16], verbose=0) - predicted)))
if backend == "jax":
    out["reloaded_devices"] = max(len(v.value.devices()) for v in loaded.weights)

errors = {}
for kwargs in ({"mode": "data_parallel", "global_batch_size": 10},
               {"mode": "model_parallel", "model_axis_size": 3}):
    try:
        distribution_for(**kwargs)
    except ValueError as e:
        errors[kwargs["mode"]] = str(e)
out["errors"] = errors
print("RESULT " + json.dumps(out))
""".replace("NUM_DEVICES", str(NUM_DEVICES))


def _env(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if backend == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
    return env


def _run(args, backend, timeout=240):
    proc = subprocess.run(
        [sys.executable, *args],
        env=_env(backend),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


@pytest.fixture(scope="module")
def multi_device(tmp_path_factory):
    if BACKEND not in ENGINES:
        pytest.skip(f"no distributed engine on {BACKEND}")
    path = tmp_path_factory.mktemp("distribute") / "distributed.keras"
    stdout = _run(["-c", WORKER, str(path)], BACKEND)
    (line,) = [s for s in stdout.splitlines() if s.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


def test_data_parallel_matches_one_device(multi_device):
    assert multi_device["devices"] == NUM_DEVICES
    result = multi_device["data_parallel"]
    assert f"over {NUM_DEVICES} devices" in result["describe"]
    assert result["loss"] < 1e-5, result
    assert result["weights_step1"] < 1e-5, result
    # TF: a spike flipped by batch-norm rounding at step 2 (module docstring).
    assert result["weights"] < (1e-5 if BACKEND == "jax" else 1e-2), result


@pytest.mark.skipif(BACKEND != "jax", reason="model_parallel runs on JAX only")
def test_model_parallel_matches_one_device(multi_device):
    result = multi_device["model_parallel"]
    assert "{'batch': 2, 'model': 2}" in result["describe"]
    assert multi_device["fc1_spec"] == [None, "model"]
    assert result["loss"] < 1e-5, result
    assert result["weights"] < 1e-5, result


@pytest.mark.skipif(BACKEND != "tensorflow", reason="MirroredStrategy only")
def test_per_replica_batch_norm_differs_measurably(multi_device):
    # Each replica normalises its 4 images with its own statistics.
    result = multi_device["per_replica_bn"]
    assert "per-replica batch norm" in result["describe"]
    assert 1e-4 < result["loss"] < 1e-1, result
    assert 1e-4 < result["weights_step1"] < 1e-1, result


def test_mixed_precision_step_under_the_plan(multi_device):
    mixed = multi_device["mixed"]
    assert mixed["variable_dtypes"] == ["float32"]
    assert abs(mixed["loss"] - mixed["float32_loss"]) < 0.05, mixed


def test_saved_after_distributed_training_reloads_on_one_device(multi_device):
    assert multi_device["reloaded"] < 1e-5
    if BACKEND == "jax":
        assert multi_device["reloaded_devices"] == 1


def test_global_batch_must_split_over_replicas(multi_device):
    message = multi_device["errors"]["data_parallel"]
    assert "global batch 10" in message and f"{NUM_DEVICES} data-parallel" in message
    assert "--batch-size 8 or 12" in message


def test_model_parallel_errors(multi_device):
    message = multi_device["errors"]["model_parallel"]
    if BACKEND == "jax":
        assert "model_axis_size=3" in message and "[1, 2, 4]" in message
    else:
        assert "KERAS_BACKEND=jax" in message and "data_parallel" in message


@pytest.mark.skipif(BACKEND not in ENGINES, reason="the example needs JAX or TF")
def test_distributed_training_example_smoke(tmp_path):
    stdout = _run(
        [
            "examples/distributed_training.py",
            "--smoke",
            "--devices",
            "2",
            "--output",
            str(tmp_path),
        ],
        BACKEND,
    )
    assert "reloaded on one device: identical predictions" in stdout
    assert (tmp_path / "model.keras").is_file()


@pytest.mark.skipif(BACKEND != "jax", reason="virtual devices from XLA_FLAGS: JAX")
def test_cli_trains_data_parallel(tmp_path):
    out = tmp_path / "run"
    _run(
        [
            "-m", "keras_spikformer.cli.main", "train", "--preset", "spikformer_tiny_digits",
            "--dataset", "digits", "--epochs", "1", "--batch-size", "128",
            "--distribute", "data_parallel", "--output", str(out),
        ],
        BACKEND,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"over {NUM_DEVICES} devices" in metrics["distribution"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


# ---------------------------------------------------------------- in-process


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="expected one of"):
        distribution_for("pipeline_parallel")
    assert DISTRIBUTE_MODES == ("none", "data_parallel", "model_parallel")


def test_none_plan_is_a_no_op():
    plan = distribution_for("none", global_batch_size=7)
    with plan.scope() as inside:
        assert inside is plan
        assert keras.distribution.distribution() is None
    assert plan.num_replicas == 1 and plan.jit_compile
    assert plan.per_replica_batch_size == 7
    assert "no distribution" in plan.describe()


def test_model_axis_size_needs_model_parallel():
    with pytest.raises(ValueError, match="only applies to 'model_parallel'"):
        distribution_for("data_parallel", model_axis_size=2)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's error")
def test_model_parallel_on_tensorflow_names_the_alternatives():
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax.*data_parallel"):
        distribution_for("model_parallel", global_batch_size=16)


@pytest.mark.skipif(BACKEND != "jax", reason="restores the global distribution")
def test_jax_scope_sets_and_restores_the_distribution():
    plan = distribution_for("data_parallel", global_batch_size=8)
    with plan.scope():
        assert keras.distribution.distribution() is plan.distribution
    assert keras.distribution.distribution() is None


@pytest.mark.skipif(BACKEND in ENGINES, reason="only other backends refuse")
def test_other_backends_are_refused():
    with pytest.raises(ValueError, match="not supported"):
        distribution_for("data_parallel")


@pytest.mark.skipif(BACKEND == "torch", reason="keras.distribution has no torch backend")
def test_layout_map_shards_the_blocks_tensor_parallel():
    devices = keras.distribution.list_devices()[:1]
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices)
    layout_map = get_layout_map(mesh)

    def axes(path):
        layout = layout_map[path]
        return None if layout is None else tuple(layout.axes)

    for unit in ("attn/q", "attn/k", "attn/v", "mlp/fc1"):
        assert axes(f"block_3/{unit}/dense/kernel") == (None, "model")
        assert axes(f"block_3/{unit}/dense/bias") == ("model",)
        assert axes(f"block_3/{unit}/bn/moving_variance") == ("model",)
    for unit in ("attn/proj", "mlp/fc2"):
        assert axes(f"block_0/{unit}/dense/kernel") == ("model", None)
        assert axes(f"block_0/{unit}/dense/bias") is None
        assert axes(f"block_0/{unit}/bn/gamma") is None
    assert axes("patch_embed/stage_2/conv/kernel") == (None, None, None, "model")
    assert axes("patch_embed/rpe/bn/beta") == ("model",)
    assert axes("outer/block_0/mlp/fc1/dense/kernel") == (None, "model")
    assert axes("head/kernel") is None
    assert (
        get_layout_map(mesh, shard_convs=False)["patch_embed/rpe/conv/kernel"] is None
    )
    with pytest.raises(ValueError, match="not 'tensor'"):
        get_layout_map(mesh, model_axis="tensor")


def test_initialize_multi_host_checks_its_arguments(monkeypatch):
    for name in (
        "KERAS_DISTRIBUTION_JOB_ADDRESSES",
        "KERAS_DISTRIBUTION_NUM_PROCESSES",
        "KERAS_DISTRIBUTION_PROCESS_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    if BACKEND != "jax":
        with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
            initialize_multi_host("10.0.0.1:1234", 2, 0)
        return
    with pytest.raises(ValueError, match="in 0..1"):
        initialize_multi_host("10.0.0.1:1234", num_processes=2, process_id=2)
    with pytest.raises(ValueError, match=">= 1"):
        initialize_multi_host("10.0.0.1:1234", num_processes=0)
    with pytest.raises(ValueError, match="lists 2 processes"):
        initialize_multi_host("a:1,b:1", num_processes=3, process_id=0)
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "5")
    with pytest.raises(ValueError, match="needs num_processes"):
        initialize_multi_host("10.0.0.1:1234")
