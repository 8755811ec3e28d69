"""E-SpikeFormer (SDT V3): the reference's weights give the reference's logits, spikes, gradients.

Fixtures: BICLab/Spike-Driven-Transformer-V3 `Model_Base/models.py` (widths
4-8-16-32-48, 6+2 blocks) and `Model_Large/spikformer.py` (widths 8-16-32-64,
2 blocks, both heads) run on CPU, 64x64 inputs, 10 classes. `data/sdt_v3_*`
are copies of ../shared/fixtures/successors/ (see the README there). The
attention-output neurons receive values exactly on 0 and k + 0.5, so these
tests also pin the rounding mode and the STE edges of each family.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import e_spikeformer_large_weights as large_weights
from keras_spikformer.convert import e_spikeformer_weights as base_weights
from keras_spikformer.convert import load_reference_weights
from keras_spikformer.models.e_spikeformer import (
    ESpikeFormer,
    ESpikeFormerBaseBackbone,
    ESpikeFormerLarge,
    ESpikeFormerLargeBackbone,
)
from keras_spikformer.testing import loss_and_gradients

DATA = Path(__file__).parent / "data"
FAMILIES = ("base", "large")
# XLA:CPU with LLVM's cheap pipeline: a third less compilation for these
# one-shot steps (HLO passes, hence the arithmetic, are unchanged).
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def run_compiled(fn, *args):
    """`jax.jit(fn)(*args)`, compiled with `FAST_COMPILE`."""
    import jax

    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def state_dict_of(npz):
    return {k[len("sd/") :]: npz[k] for k in npz.files if k.startswith("sd/")}


@pytest.fixture(scope="module")
def fixtures():
    return {kind: np.load(DATA / f"sdt_v3_{kind}_small.npz") for kind in FAMILIES}


def build(kind, npz):
    weights = base_weights if kind == "base" else large_weights
    config, num_classes, _ = weights.infer_architecture(
        state_dict_of(npz), image_shape=(64, 64, 3)
    )
    if kind == "base":
        return ESpikeFormer(ESpikeFormerBaseBackbone(**config), num_classes)
    kd = config.pop("distillation_head")
    return ESpikeFormerLarge(ESpikeFormerLargeBackbone(**config), num_classes, kd)


@pytest.fixture(scope="module")
def built(fixtures):
    """One build per family and module; each test reloads the reference weights."""
    return {kind: build(kind, fixtures[kind]) for kind in FAMILIES}


def fresh(built, fixtures, kind):
    model = built[kind]
    report = load_reference_weights(model, state_dict_of(fixtures[kind]))
    assert report.ok and len(report.loaded) == len(model.weights)
    return model, fixtures[kind]


def images_of(npz):
    return npz["input"].transpose(0, 2, 3, 1)  # NCHW -> NHWC


def to_reference_layout(ours, reference, kind):
    """Our channels-last `[B, (T,) ...]` neuron output in the reference's layout."""
    x = np.asarray(ours)
    if kind == "large":
        x = np.swapaxes(x, 0, 1)  # [T, B, ...]
    if x.ndim >= (5 if kind == "large" else 4):  # maps: channels before H, W
        x = np.moveaxis(x, -1, x.ndim - 3)
    return x.reshape(reference.shape)


def forward_with_spikes(model, images, layers):
    """Eval output and the outputs of `layers`; one compiled call on JAX."""
    if keras.backend.backend() != "jax":
        with record_spikes() as record:
            logits = model(images, training=False)
        return logits, [record.last(layer) for layer in layers]

    def run(trainable, non_trainable, x):
        with record_spikes() as record:
            logits, _ = model.stateless_call(trainable, non_trainable, x)
        return logits, [record.last(layer) for layer in layers]

    return run_compiled(
        run,
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        images,
    )


@pytest.mark.parametrize("kind", FAMILIES)
def test_eval_logits_and_every_integer_spike_match(built, fixtures, kind):
    model, npz = fresh(built, fixtures, kind)
    modules = base_weights.reference_module_map(model)
    keys = [k for k in npz.files if k.startswith("sn/")]
    assert len(keys) == (105 if kind == "base" else 26)
    logits, spikes = forward_with_spikes(
        model, images_of(npz), [modules[k[3:]] for k in keys]
    )
    logits = ops.convert_to_numpy(logits)
    if kind == "base":  # integer head input: bit-equal
        np.testing.assert_array_equal(logits, npz["logits"])
    else:  # the main head reads a real-valued token mean
        np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
    for key, recorded in zip(keys, spikes, strict=True):
        ours = to_reference_layout(ops.convert_to_numpy(recorded), npz[key], kind)
        flips = int(np.sum(ours != npz[key]))
        assert flips == 0, f"{key}: {flips} spike levels differ from the reference"
    if kind == "large":  # eval = mean of the heads; head_kd reads the integer spikes
        integers = ops.convert_to_numpy(spikes[keys.index("sn/lif")])  # [B, T, C]
        kernel, bias = (ops.convert_to_numpy(v) for v in model.head_kd.weights)
        logits_kd = (integers @ kernel + bias).mean(axis=1)
        np.testing.assert_array_equal(logits_kd, npz["check/logits_kd"])
        main = 2 * logits - logits_kd
        np.testing.assert_allclose(main, npz["check/logits_main"], rtol=0, atol=1e-5)


class _BothHeads(keras.Model):
    """The Large classifier's two training outputs stacked into one tensor."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        self.built = True  # the task is; an eager build call is slow on JAX

    def call(self, x, training=None):
        return ops.stack(self.task(x, training=training), axis=0)


def large_loss(teacher_logits):
    """0.5 * LS-CE_0.1(main) + 0.5 * CE(kd head, argmax teacher): the reference's hard KD."""
    smoothed = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1
    )
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher = np.argmax(teacher_logits, axis=1)

    def loss(labels, stacked):
        onehot = ops.one_hot(labels, stacked.shape[-1])
        return 0.5 * smoothed(onehot, stacked[0]) + 0.5 * plain(teacher, stacked[1])

    return loss


def base_loss(labels, logits):
    onehot = ops.one_hot(labels, logits.shape[-1])
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(
        onehot, logits
    )


def absolute_tolerances(npz):
    """Parameters whose gradient is zero or eps-only in exact arithmetic."""
    check = json.loads(str(npz["config_json"]))["fp64_check_train"]
    zero = check.get("zero_grad_params_fp32_absmax", {})
    tiny = check.get("tiny_grad_params", {})
    # fp32 noise of a sum that is zero in exact arithmetic: a few 1e-6 here.
    out = {name: 1e-5 for name in zero}
    out.update({name: 1e-7 + 0.05 * value["norm_fp64"] for name, value in tiny.items()})
    return out


def train_step(target, images, labels, loss_fn):
    """Loss, outputs, gradients and the non-trainable values after one train step.

    Returns `(loss, logits, grads, grad_input, state)`, `state` mapping
    `id(variable)` to its value after the step (batch-norm moving statistics).
    On JAX one compiled function gives everything.
    """
    variables = target.non_trainable_variables
    if keras.backend.backend() != "jax":
        loss, logits, grads, grad_input = loss_and_gradients(
            target, images, labels, loss_fn
        )
        state = {id(v): ops.convert_to_numpy(v) for v in variables}
        return loss, logits, grads, grad_input, state
    import jax

    def compute(trainable, non_trainable, x):
        logits, after = target.stateless_call(
            trainable, non_trainable, x, training=True
        )
        return loss_fn(labels, logits), (logits, after)

    step = jax.value_and_grad(compute, argnums=(0, 2), has_aux=True)
    (loss, (logits, after)), (grads, grad_input) = run_compiled(
        step,
        [v.value for v in target.trainable_variables],
        [v.value for v in variables],
        images,
    )
    state = {id(v): np.asarray(x) for v, x in zip(variables, after, strict=True)}
    return (
        float(loss),
        np.asarray(logits),
        [np.asarray(g) for g in grads],
        (np.asarray(grad_input)),
        state,
    )


def check_gradients(model, grads, grad_input, npz):
    by_variable = {
        id(v): g for v, g in zip(model.trainable_variables, grads, strict=True)
    }
    variables = base_weights.reference_variable_map(model)
    absolute = absolute_tolerances(npz)
    compared = 0
    for key in (k for k in npz.files if k.startswith("grad/") and k != "grad/input"):
        name = key[len("grad/") :]
        variable = variables[name]
        reference = base_weights.to_keras_layout(name, npz[key], tuple(variable.shape))
        error = np.abs(by_variable[id(variable)] - reference).max()
        if name in absolute:
            assert error <= absolute[name], (name, error)
        else:
            assert error <= 1e-4 * np.abs(reference).max() + 1e-9, (name, error)
        compared += 1
    assert compared == len(model.trainable_variables)
    reference = npz["grad/input"]
    ours = grad_input.transpose(0, 3, 1, 2)
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()


def check_buffers(model, before, state, npz):
    """Running means equal; running variances equal after PyTorch's n/(n-1) correction."""
    variables = base_weights.reference_variable_map(model)
    batch = npz["input"].shape[0]
    counts = [batch * s * s for s in (32, 16, 8, 4)]  # positions per channel of a BN
    checked = 0
    for key in (k for k in npz.files if k.startswith("train/buffers_after/")):
        name = key[len("train/buffers_after/") :]
        if base_weights.is_ignored(name):
            continue
        ours, reference = state[id(variables[name])], npz[key]
        if name.endswith("running_mean"):
            np.testing.assert_allclose(
                ours, reference, rtol=1e-5, atol=1e-6, err_msg=name
            )
        else:
            biased = (ours - 0.9 * before[name]) / 0.1
            unbiased = (reference - 0.9 * before[name]) / 0.1
            errors = [np.abs(biased * n / (n - 1) - unbiased).max() for n in counts]
            assert min(errors) <= 1e-4 * np.abs(unbiased).max() + 1e-6, name
        checked += 1
    assert checked == 2 * sum(1 for v in variables if v.endswith("running_mean"))


@pytest.mark.parametrize("kind", FAMILIES)
def test_train_step_logits_loss_gradients_and_buffers_match(built, fixtures, kind):
    model, npz = fresh(built, fixtures, kind)
    if kind == "base":
        target, loss_fn = model, base_loss
    else:
        target, loss_fn = _BothHeads(model), large_loss(npz["train/teacher_logits"])
    before = {
        name: ops.convert_to_numpy(v)
        for name, v in base_weights.reference_variable_map(model).items()
    }
    loss, logits, grads, grad_input, state = train_step(
        target, images_of(npz), npz["train/labels"], loss_fn
    )
    np.testing.assert_allclose(loss, float(npz["train/loss"]), rtol=1e-5)
    if kind == "base":
        np.testing.assert_array_equal(logits, npz["train/logits"])
    else:
        np.testing.assert_allclose(logits[0], npz["train/logits"], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(logits[1], npz["train/logits_kd"])
    check_gradients(model, grads, grad_input, npz)
    check_buffers(model, before, state, npz)
