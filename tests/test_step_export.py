"""Export of the streaming step: stepping through the SavedModel (TF Serving
style) or the ONNX file (onnxruntime), the state fed back each step, gives
the Keras stream's outputs at every step."""

import keras
import numpy as np
import pytest
from conftest import hide_package
from keras import ops

from keras_spikformer.streaming import (
    export_step,
    initial_step_state,
    state_from_outputs,
)
from keras_spikformer.testing.tiny_models import (
    tiny_frames_spikformer,
    zero_initialisers,
)

BACKEND = keras.backend.backend()
BATCH, STEPS = 2, 4
# Exact here on every backend (the same ops in the same order); the bound.
TOLERANCE = 1e-5


def trained_like_model():
    """A tiny event-frame Spikformer whose neurons fire: random kernels,
    gammas, betas, biases and moving statistics (an untrained model's
    initialisation keeps most neurons silent)."""
    model = tiny_frames_spikformer(num_timesteps=2, num_classes=3)  # zeros
    rng = np.random.default_rng(0)
    for variable in model.weights:
        shape, path = variable.shape, variable.path
        if path.endswith("moving_mean"):
            variable.assign(rng.normal(0.0, 0.3, shape))
        elif path.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, shape))
        elif path.endswith("gamma"):
            variable.assign(rng.uniform(1.0, 2.0, shape))
        elif path.endswith(("beta", "bias")):
            variable.assign(rng.normal(0.5, 0.5, shape))
        else:  # kernels: He-scaled, doubled
            fan_in = int(np.prod(shape[:-1]))
            variable.assign(rng.normal(0.0, 2.0 * np.sqrt(2.0 / fan_in), shape))
    return model


@pytest.fixture(scope="module")
def stream_and_reference():
    """The Keras stream and its outputs at each of STEPS random event frames."""
    model = trained_like_model()
    with zero_initialisers():  # the stream's one-step copy gets model's weights
        stream = model.stream(batch_size=BATCH)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 4, (STEPS, BATCH, 8, 8, 2)).astype("float32")
    reference = []
    for frame in frames:
        out = stream.step(frame)
        reference.append({k: ops.convert_to_numpy(v) for k, v in out.items()})
    return model, stream, frames, reference


def check_steps(run, initial, frames, reference):
    """Steps `run(feed) -> {name: array}` through `frames` from `initial`,
    feeding each step's state back; compares with the Keras stream's steps."""
    state = dict(initial)
    for t, (frame, expected) in enumerate(zip(frames, reference, strict=True)):
        out = run({"x_t": frame, **state})
        for key in ("logits", "mean_logits"):
            diff = np.max(np.abs(out[key] - expected[key]))
            assert diff <= TOLERANCE, f"step {t + 1}: {key} differ by {diff}"
        assert float(out["steps"]) == t + 1
        state = state_from_outputs(out)
        assert state.keys() == initial.keys()
    # The state carries: step 2 differs from a fresh step 1 on the same frame.
    fresh = run({"x_t": frames[1], **initial})
    assert not np.allclose(fresh["logits"], reference[1]["logits"], atol=1e-3)
    assert np.abs(reference[1]["logits"]).max() > 0.1  # the neurons fire


@pytest.mark.skipif(BACKEND == "torch", reason="no SavedModel export on torch")
def test_saved_model_step_gives_the_stream_outputs(stream_and_reference, tmp_path):
    import tensorflow as tf

    model, stream, frames, reference = stream_and_reference
    path = tmp_path / "step"
    names = stream.export(str(path))
    initial = initial_step_state(stream)
    assert list(initial) == [f"state_{name}" for name in names]
    assert names[-2:] == ["sum_0", "steps"] and names[0].startswith("membrane_000")

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"x_t", *initial}
    saved_initial = loaded.signatures["initial_state"]()
    assert saved_initial.keys() == initial.keys()
    for name, value in initial.items():
        np.testing.assert_array_equal(saved_initial[name].numpy(), value)

    def run(feed):  # TF Serving style: named inputs, named outputs
        outputs = signature(**{k: tf.constant(v) for k, v in feed.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    check_steps(run, initial, frames, reference)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        stream.export(str(path))


@pytest.mark.skipif(BACKEND == "jax", reason="no ONNX export of the step on JAX")
def test_onnx_step_gives_the_stream_outputs(stream_and_reference, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, stream, frames, reference = stream_and_reference
    path = tmp_path / "step.onnx"
    path.write_bytes(b"an older export")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_step(model, path, format="onnx", batch_size=BATCH)
    assert path.read_bytes() == b"an older export"
    # A model (its weights copied into a new step network), not the stream.
    model.export_step(path, format="onnx", batch_size=BATCH, overwrite=True)

    session = ort.InferenceSession(str(path))
    initial = initial_step_state(model, batch_size=BATCH)
    assert {i.name for i in session.get_inputs()} == {"x_t", *initial}
    names = [output.name for output in session.get_outputs()]

    def run(feed):
        return dict(zip(names, session.run(None, feed), strict=True))

    check_steps(run, initial, frames, reference)


def test_refusals_name_the_problem(stream_and_reference, tmp_path, monkeypatch):
    model, stream, _, _ = stream_and_reference
    with pytest.raises(ValueError, match="'tf_saved_model' or 'onnx'"):
        export_step(model, tmp_path / "step.tflite", format="litert")
    with pytest.raises(ValueError, match="built for batch_size=2"):
        export_step(stream, tmp_path / "a", batch_size=3)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        export_step(model, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"

    if BACKEND == "torch":
        with pytest.raises(NotImplementedError, match="TensorFlow or JAX"):
            export_step(stream, tmp_path / "saved")
    if BACKEND == "jax":
        with pytest.raises(NotImplementedError, match="TensorFlow or torch"):
            export_step(stream, tmp_path / "step.onnx", format="onnx")
    else:
        hide_package(monkeypatch, "onnx")
        with pytest.raises(ImportError, match=r"needs onnx.*pip install onnx"):
            export_step(stream, tmp_path / "step.onnx", format="onnx")
    assert not any((tmp_path / name).exists() for name in ("a", "saved", "step.onnx"))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf2onnx path, once (CI's TF pass)")
def test_onnx_step_of_sdt_v1_whose_head_neuron_steps(tmp_path):
    """SDT V1's fixture: its head LIF's membrane is part of the state."""
    ort = pytest.importorskip("onnxruntime")
    from test_streaming_exactness import sdt_model

    with zero_initialisers():
        model, images = sdt_model()
        stream = model.stream(batch_size=images.shape[0])
    frames = [images.astype("float32")] * 3
    reference = []
    for frame in frames:
        out = stream.step(frame)
        reference.append({k: ops.convert_to_numpy(v) for k, v in out.items()})
    path = tmp_path / "sdt.onnx"
    stream.export(path, format="onnx")
    session = ort.InferenceSession(str(path))
    names = [output.name for output in session.get_outputs()]

    def run(feed):
        return dict(zip(names, session.run(None, feed), strict=True))

    initial = initial_step_state(stream)
    assert any("head" in name for name in initial), list(initial)
    check_steps(run, initial, frames, reference)
