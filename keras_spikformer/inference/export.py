"""Export a classifier or backbone for serving: TF SavedModel or ONNX."""

import importlib.util
import numbers
from pathlib import Path

import keras

from keras_spikformer.inference.fusion import fuse

# What each format needs beyond the package's own dependencies, per backend.
_NEEDS = {
    ("onnx", "tensorflow"): ("onnx", "tf2onnx"),
    ("onnx", "jax"): ("onnx", "jax2onnx"),
    ("onnx", "torch"): ("onnx", "onnxscript"),
}


def export_model(
    model,
    filepath,
    format="tf_saved_model",
    fused=False,
    batch_size=None,
    overwrite=False,
    **kwargs,
):
    """Writes `model`'s inference function as a TF SavedModel or an ONNX file.

    A thin layer over `keras.Model.export`: it checks that the format's
    packages are installed (`pip install keras-spikformer[export]`) and can
    fold the batch norms first (`fused=True`, see `inference.fuse`). The
    exported function takes model-ready inputs (what `model.preprocess`
    returns: resized, normalised float32 images `[batch, H, W, C]`, or event
    frames) and returns the logits (the backbone's output for a backbone).
    The preprocessor is not part of the export. Checked (`tests/test_export.py`):
    SavedModel on TensorFlow and JAX, ONNX on TensorFlow (tf2onnx, free
    batch size) and torch (`torch.onnx` dynamo exporter, fixed `batch_size`:
    Keras's free-batch path on torch is the TorchScript exporter, which cannot
    export the neurons' time loop, `aten::unbind`). ONNX on JAX goes through
    `jax2onnx` (not in the extra); SavedModel export fails inside Keras on
    torch, so it is refused there.

    Args:
        model: a built classifier or backbone of this package.
        filepath: a directory (`"tf_saved_model"`) or a `.onnx` file.
        format: `"tf_saved_model"`, `"onnx"` or any other format Keras exports.
        fused: bool, export the batch-norm-folded copy. Exact on the reference
            fixtures; on trained weights a spike within float rounding of its
            threshold can flip (see `inference.fuse`). Defaults to `False`.
        batch_size: int >= 1, a fixed batch size for the exported function;
            required for ONNX on torch and for QKFormer's batch-spanning
            neuron in ONNX, `None` (free) elsewhere.
        overwrite: bool, replace an existing `.onnx` file or SavedModel
            directory. Without it, an existing file or a non-empty directory
            is refused; a non-empty directory that is not a SavedModel is
            refused always (nothing is ever deleted). Defaults to `False`.
        **kwargs: passed to `keras.Model.export` (`verbose`, `input_signature`, ...).

    Example:
    >>> export_model(model, "digits.onnx", format="onnx")
    >>> session = onnxruntime.InferenceSession("digits.onnx")
    """
    batch_size = _check_batch_size(batch_size)
    if format == "onnx":
        _check_onnx_batch(model, batch_size, kwargs.get("input_signature"))
    _check_target(filepath, format, overwrite)
    backend = keras.backend.backend()
    _check_packages(format, backend)
    if backend == "torch" and format == "tf_saved_model":
        raise NotImplementedError(
            "Keras cannot export a SavedModel from the torch backend for these "
            "models; export on the TensorFlow or JAX backend (presets load on any "
            'backend) or use format="onnx" with a batch_size.'
        )
    if backend == "torch" and format == "onnx" and batch_size is None:
        if kwargs.get("input_signature") is None:
            raise ValueError(
                "ONNX export on the torch backend needs a fixed batch size: pass "
                "batch_size=N (the exported model then takes exactly N images), "
                "or export on the TensorFlow backend for a free batch size."
            )
    if batch_size is not None:
        shape = (batch_size,) + tuple(model.inputs[0].shape[1:])
        spec = keras.InputSpec(shape=shape, dtype="float32", name=model.inputs[0].name)
        kwargs["input_signature"] = [spec]
    target = fuse(model) if fused else model
    if not getattr(target, "_called", True):
        # Keras exports only models that have been called; a symbolic call
        # (no computation) marks a freshly built or loaded one.
        target(*[keras.KerasTensor(x.shape, x.dtype) for x in target.inputs])
    kwargs.setdefault("verbose", False)
    return keras.Model.export(target, filepath, format=format, **kwargs)


def _check_packages(format, backend, also=()):
    """Raises an `ImportError` naming what `format` needs on `backend` (and
    the modules `also`) that is not installed."""
    needs = _NEEDS.get((format, backend), ()) + tuple(also)
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"Exporting to {format!r} on the {backend} backend needs "
            f"{', '.join(missing)}: `pip install {' '.join(missing)}` (the "
            "`keras-spikformer[export]` extra has what TensorFlow and torch need)."
        )


def _check_batch_size(batch_size):
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(
            f"`batch_size` must be a positive int or None; got {batch_size!r}."
        )
    if batch_size < 1:
        raise ValueError(
            f"`batch_size` must be at least 1 (the number of images the exported "
            f"model takes), or None for a free batch size; got {batch_size}."
        )
    return int(batch_size)


def _check_onnx_batch(model, batch_size, input_signature):
    """Refuses a free batch size where ONNX Runtime could not load the result."""
    if batch_size is not None:
        return
    if input_signature is not None:
        shapes = [getattr(spec, "shape", None) for spec in input_signature]
        if all(shape is not None and shape[0] is not None for shape in shapes):
            return
    from keras_spikformer.models.qkformer import BatchSpanningLIFNeuron

    spanning = [
        layer.path
        for layer in model._flatten_layers()
        if isinstance(layer, BatchSpanningLIFNeuron)
    ]
    if spanning:
        raise ValueError(
            f"{model.name} has a batch-spanning neuron ({spanning[0]}, QKFormer's "
            "reference projection neuron: it steps through the whole batch). With "
            "a free batch size it is exported as a loop that ONNX Runtime cannot "
            "load, so nothing was written. Pass batch_size=N (the exported model "
            "then takes exactly N images), or build the model with "
            "batch_spanning_projection=False (outputs then differ from the "
            "reference checkpoints)."
        )


def _check_target(filepath, format, overwrite):
    """Refuses to write over existing files unless `overwrite`; never deletes."""
    path = Path(filepath)
    writes_a_file = format != "tf_saved_model"  # ONNX, LiteRT, ... write one file
    if path.is_dir():
        if writes_a_file:
            raise FileExistsError(
                f"{path} is a directory; give the path of the {format} file to write."
            )
        if not any(path.iterdir()):
            return
        if not (path / "saved_model.pb").is_file():
            raise FileExistsError(
                f"{path} is a non-empty directory that is not a SavedModel; export "
                "to a new or empty directory (nothing was written or deleted)."
            )
        if not overwrite:
            raise FileExistsError(
                f"{path} already holds a SavedModel; pass overwrite=True to replace "
                "it, or export to a new directory."
            )
    elif path.exists() or path.is_symlink():
        if not writes_a_file or not path.is_file():
            kind = "file" if writes_a_file else "directory"
            raise FileExistsError(
                f"{path} exists and is not a regular {kind}; export to a new path."
            )
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists; pass overwrite=True to replace it, or "
                "export to a new file."
            )
