"""Export of the streaming step: `(x_t, state) -> (outputs_t, state)` as a
TF SavedModel or an ONNX file, the state a flat set of named tensors."""

import re

import keras
from keras import ops

from keras_spikformer.inference.export import (
    _check_batch_size,
    _check_packages,
    _check_target,
)
from keras_spikformer.streaming.step_network import StepNetwork
from keras_spikformer.streaming.stream import Stream

STATE_PREFIX = "state_"
NEXT_PREFIX = "next_"
_FORMATS = ("tf_saved_model", "onnx")


def step_network_of(model_or_stream, batch_size=None):
    """The `StepNetwork` to export: a stream's own, or a new one for a model.

    Args:
        model_or_stream: a streamable classifier of this package or a `Stream`.
        batch_size: int >= 1 or `None` (a stream's batch size; 1 for a model).

    Returns:
        The `StepNetwork`.
    """
    batch_size = _batch_size_of(model_or_stream, batch_size)
    if isinstance(model_or_stream, Stream):
        return model_or_stream.network
    return StepNetwork(model_or_stream, batch_size)


def _batch_size_of(model_or_stream, batch_size):
    batch_size = _check_batch_size(batch_size)
    if not isinstance(model_or_stream, Stream):
        return 1 if batch_size is None else batch_size
    if batch_size not in (None, model_or_stream.batch_size):
        raise ValueError(
            f"The stream was built for batch_size={model_or_stream.batch_size}; "
            f"got batch_size={batch_size}. Leave batch_size out, or build another "
            "stream with model.stream(batch_size=...)."
        )
    return model_or_stream.batch_size


def state_names(network):
    """The flat state's names, in the order of the state's leaves.

    A neuron's membrane `"{k:03d}/{layer}"` (the `k`-th neuron call) is
    `"membrane_{k:03d}_{layer}"`, the running sums behind the mean logits are
    `"sum_{i}"`, the step count `"steps"`; any character other than letters,
    digits and `_` becomes `_`.
    """
    names = [re.sub(r"[^A-Za-z0-9_]", "_", name) for name in network.state_names()]
    if len(set(names)) != len(names):
        raise ValueError(f"Two state tensors get the same exported name: {names}.")
    return names


def initial_step_state(model_or_stream, batch_size=None):
    """The state that starts a sequence in an exported step, as numpy arrays.

    Args:
        model_or_stream: the classifier or `Stream` that was exported.
        batch_size: the exported batch size (a stream's own if `None`; 1 for
            a model).

    Returns:
        dict `{"state_<name>": numpy array}`: the exported step's state inputs
        (see `export_step`), membranes at rest, sums and step count at 0.

    Example:
    >>> state = initial_step_state(model, batch_size=1)
    >>> outputs = session.run(None, {"x_t": frame, **state})
    """
    return _initial_arrays(step_network_of(model_or_stream, batch_size))


def state_from_outputs(outputs):
    """The next step's state inputs from a step's named outputs.

    Args:
        outputs: dict of the exported step's outputs by name (a SavedModel
            signature's result, or ONNX Runtime's outputs zipped with their
            names).

    Returns:
        dict `{"state_<name>": value}`, each `"next_state_<name>"` output.
    """
    return {
        name[len(NEXT_PREFIX) :]: value
        for name, value in outputs.items()
        if name.startswith(NEXT_PREFIX + STATE_PREFIX)
    }


def export_step(
    model_or_stream,
    filepath,
    format="tf_saved_model",
    batch_size=None,
    overwrite=False,
):
    """Writes a classifier's streaming step as a TF SavedModel or an ONNX file.

    The exported function is `StepNetwork.step` (batch norms on their moving
    statistics) with a flat, named signature, for a fixed batch size `B`:

    - inputs: `"x_t"` (`[B, H, W, C]` float32, one model-ready time step,
      what `Stream.step` takes) and one `"state_<name>"` per state tensor
      (`state_names`: `membrane_...` per neuron call, `sum_<i>`, `steps`);
    - outputs: `"logits"` (this step's), `"mean_logits"` (the multi-step
      model's output if the sequence ended now), `"steps"`, and one
      `"next_state_<name>"` per state tensor, to feed back as `"state_<name>"`
      (`state_from_outputs`).

    A new sequence starts from `initial_step_state(...)`; the SavedModel also
    has an `initial_state` signature (no inputs) that returns it. The step is
    the SavedModel's `serving_default` (and `step`) signature. Checked
    (`tests/test_step_export.py`): SavedModel on TensorFlow and JAX (jax2tf),
    ONNX on TensorFlow (tf2onnx) and torch (`torch.onnx` dynamo exporter).
    SavedModel on torch and ONNX on JAX are refused.

    Args:
        model_or_stream: a streamable classifier of this package (its current
            weights are copied) or a `Stream` (`model.stream(...)`).
        filepath: a directory (`"tf_saved_model"`) or a `.onnx` file.
        format: `"tf_saved_model"` or `"onnx"`.
        batch_size: int >= 1, the batch size of every step; `None`: the
            stream's, or 1 for a model.
        overwrite: bool, replace an existing `.onnx` file or SavedModel (see
            `inference.export_model`; nothing else is ever deleted).

    Returns:
        The list of state names (`state_names`).

    Example:
    >>> export_step(model, "step.onnx", format="onnx", batch_size=1)
    >>> session = onnxruntime.InferenceSession("step.onnx")
    >>> names = [o.name for o in session.get_outputs()]
    >>> state = initial_step_state(model, batch_size=1)
    >>> for frame in frames:  # each [1, H, W, 2]
    ...     out = dict(zip(names, session.run(None, {"x_t": frame, **state})))
    ...     state = state_from_outputs(out)
    """
    if format not in _FORMATS:
        raise ValueError(
            f"export_step writes 'tf_saved_model' or 'onnx'; got format={format!r}."
        )
    _batch_size_of(model_or_stream, batch_size)
    _check_target(filepath, format, overwrite)
    _check_backend(format)
    network = step_network_of(model_or_stream, batch_size)
    names = state_names(network)
    if format == "tf_saved_model":
        _write_saved_model(network, names, str(filepath))
    elif keras.backend.backend() == "tensorflow":
        _write_onnx_tf(network, names, str(filepath))
    else:
        _write_onnx_torch(network, names, str(filepath))
    return names


def _check_backend(format):
    backend = keras.backend.backend()
    if backend == "torch" and format == "tf_saved_model":
        raise NotImplementedError(
            "Keras cannot export a SavedModel from the torch backend: export the "
            "step on the TensorFlow or JAX backend (presets load on any backend), "
            'or use format="onnx".'
        )
    if backend == "jax" and format == "onnx":
        raise NotImplementedError(
            "ONNX export of the step is not available on the JAX backend: export "
            'it on the TensorFlow or torch backend, or use format="tf_saved_model".'
        )
    _check_packages(format, backend, also=("tensorflow",) if format != "onnx" else ())


def _initial_arrays(network):
    leaves = network.flatten_state(network.initial_state())
    return {
        STATE_PREFIX + name: ops.convert_to_numpy(value).astype("float32")
        for name, value in zip(state_names(network), leaves, strict=True)
    }


def _flat_step(network, names, x_t, leaves):
    """`network.step` on flat leaves; returns the named outputs in order."""
    new_state, outputs = network.step(network.unflatten_state(list(leaves)), x_t)
    flat = {key: outputs[key] for key in ("logits", "mean_logits", "steps")}
    for name, value in zip(names, network.flatten_state(new_state), strict=True):
        flat[NEXT_PREFIX + STATE_PREFIX + name] = value
    return flat


def _tf_specs(network):
    import tensorflow as tf

    shape = (network.batch_size,) + tuple(network.frame_shape)
    specs = {"x_t": tf.TensorSpec(shape, tf.float32, name="x_t")}
    for name, value in _initial_arrays(network).items():
        specs[name] = tf.TensorSpec(value.shape, tf.float32, name=name)
    return specs


def _write_saved_model(network, names, filepath):
    import tensorflow as tf

    specs = _tf_specs(network)

    def step(inputs):
        leaves = [inputs[STATE_PREFIX + name] for name in names]
        return _flat_step(network, names, inputs["x_t"], leaves)

    initial = _initial_arrays(network)

    @tf.function(input_signature=[])
    def initial_state():
        return {name: tf.constant(value) for name, value in initial.items()}

    initial_state.get_concrete_function()
    archive = keras.export.ExportArchive()
    archive.track(network.model)
    archive.add_endpoint("step", step, input_signature=[specs])
    archive.add_endpoint("initial_state", initial_state)
    archive.write_out(filepath, verbose=False)


def _write_onnx_tf(network, names, filepath):
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    specs = _tf_specs(network)

    @tf.function(input_signature=[specs], autograph=False)
    def step(inputs):
        leaves = [inputs[STATE_PREFIX + name] for name in names]
        return _flat_step(network, names, inputs["x_t"], leaves)

    patch_tf2onnx()  # numpy 2 (as keras.Model.export does)
    tf2onnx.convert.from_function(step, [specs], output_path=filepath)


def _write_onnx_torch(network, names, filepath):
    import torch

    class StepModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = network.model  # registers the weights

        def forward(self, x_t, *leaves):
            return tuple(_flat_step(network, names, x_t, leaves).values())

    initial = _initial_arrays(network)
    shape = (network.batch_size,) + tuple(network.frame_shape)
    args = (torch.zeros(shape),) + tuple(torch.from_numpy(v) for v in initial.values())
    output_names = ["logits", "mean_logits", "steps"]
    output_names += [NEXT_PREFIX + STATE_PREFIX + name for name in names]
    module = StepModule().eval()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            input_names=["x_t", *initial],
            output_names=output_names,
            dynamo=True,
            verbose=False,
        )
    program.optimize()
    program.save(filepath)
