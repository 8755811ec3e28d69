"""Checks the values of a checkpoint's tensors before any model is built.

Every parameter and buffer that a family maps to a Keras variable is a float.
A checkpoint whose tensors are integers, booleans, complex numbers, strings,
dates or records would be cast to float silently (or fail deep inside the
backend), and NaN, infinite values or negative batch-norm variances give a
model that predicts nonsense. `check_tensor_values` refuses all of them,
naming the tensor.
"""

import ml_dtypes
import numpy as np

from keras_spikformer.convert.checkpoint_errors import CheckpointFormatError

__all__ = ["check_tensor_values"]

# Float types numpy does not class as `np.floating` (their kind is "V").
_EXTRA_FLOATS = tuple(
    np.dtype(t)
    for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)
)


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or any(dtype == t for t in _EXTRA_FLOATS)


def check_tensor_values(state_dict, is_ignored=lambda name: False, source=None):
    """Raises `CheckpointFormatError` unless every tensor is finite float data.

    Args:
        state_dict: mapping of reference names to arrays.
        is_ignored: `name -> bool`, the tensors the family skips (batch-norm
            counters such as `num_batches_tracked`, which are integers).
        source: the checkpoint's path, for messages, or `None`.

    Raises:
        CheckpointFormatError: naming the first tensor that is not a float
            array (its dtype), holds NaN or infinite values (how many, and the
            first index), or is a batch-norm `running_var` with negative values.

    Example:
    >>> check_tensor_values(read_state_dict("ckpt.pth"), is_ignored, "ckpt.pth")
    """
    where = f"{source}: " if source is not None else ""
    for name, value in state_dict.items():
        if is_ignored(name):
            continue
        array = np.asarray(value)
        if not _is_float(array.dtype):
            raise CheckpointFormatError(
                f"{where}tensor {name!r} has dtype {array.dtype} ({_kind(array.dtype)}), "
                "but the model's parameters are floating point; converting it would "
                "change its values silently. Save the float weights of the trained "
                "model (e.g. model.float().state_dict() in PyTorch), not a quantised, "
                "boolean, complex or text copy."
            )
        values = array if array.dtype.kind == "f" else array.astype(np.float32)
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise CheckpointFormatError(
                f"{where}tensor {name!r} holds {bad} NaN or infinite value(s) (the "
                f"first at index {first}: {values[first]}); a model with them "
                "predicts nonsense. Use a checkpoint saved before training "
                "diverged (an earlier epoch, or the EMA weights with --ema)."
            )
        if name.endswith("running_var") and (values < 0).any():
            lowest = float(values.min())
            raise CheckpointFormatError(
                f"{where}batch-norm variance {name!r} has negative values (lowest "
                f"{lowest:g}); a variance cannot be negative, so the file is damaged "
                "or was edited. Download or save the checkpoint again."
            )


def _kind(dtype: np.dtype) -> str:
    kinds = {
        "i": "integers",
        "u": "unsigned integers",
        "b": "booleans",
        "c": "complex numbers",
        "U": "text",
        "S": "bytes",
        "M": "dates",
        "m": "time spans",
    }
    if dtype.names:
        return "records with fields " + ", ".join(dtype.names)
    return kinds.get(dtype.kind, "not numbers")
