"""Loading reference (PyTorch) state dicts into Keras models of any family."""

import dataclasses

import keras
import numpy as np

from keras_spikformer.convert.families import family_of_model, family_of_state_dict
from keras_spikformer.convert.tensor_values import check_tensor_values

# How many names of each kind a mismatch report shows.
_SHOWN = 5


# PyTorch batch-norm tensor names -> Keras BatchNormalization attributes.
BN_KEYS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def module_variables(modules):
    """`{reference parameter name: Keras variable}` of a reference module map.

    Batch norms give `weight/bias/running_mean/running_var`; layers with a
    kernel give `weight` (and `bias` when they use one).

    Example:
    >>> module_variables({"head": model.head})  # {"head.weight": ..., "head.bias": ...}
    """
    out = {}
    for module, layer in modules.items():
        if isinstance(layer, keras.layers.BatchNormalization):
            for ref, attr in BN_KEYS.items():
                out[f"{module}.{ref}"] = getattr(layer, attr)
        elif hasattr(layer, "kernel"):
            out[f"{module}.weight"] = layer.kernel
            if getattr(layer, "use_bias", False):
                out[f"{module}.bias"] = layer.bias
    return out


def to_keras_layout(name, array, target_shape):
    """Transposes a reference tensor into the Keras layout of `target_shape`.

    Convolutions `[out, in, kh, kw]` -> `[kh, kw, in, out]`; linears and 1x1
    convolutions `[out, in(, 1, 1)]` -> `[in, out]`; everything else as is.
    """
    array = np.asarray(array)
    if name.endswith(".weight") and array.ndim == 4 and len(target_shape) == 4:
        return array.transpose(2, 3, 1, 0)
    if name.endswith(".weight") and len(target_shape) == 2:
        if array.ndim > 2 and all(d == 1 for d in array.shape[2:]):
            array = array.reshape(array.shape[:2])
        if array.ndim == 2:
            return array.T
    return array


@dataclasses.dataclass
class LoadReport:
    """What `load_reference_weights` did with each reference tensor.

    `mismatched` holds `(name, checkpoint shape, shape the model needs in the
    checkpoint's layout)`.
    """

    loaded: list
    missing: list
    unexpected: list
    mismatched: list
    ignored: list
    # `(checkpoint name, model name)` pairs matched by position (old names).
    by_position: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self):
        """A compact report: counts, then the first few names of each kind."""

        def some(names):
            more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
            return ", ".join(names[:_SHOWN]) + more

        lines = [
            f"loaded {len(self.loaded)}, missing {len(self.missing)}, unexpected "
            f"{len(self.unexpected)}, wrong shape {len(self.mismatched)}, ignored "
            f"{len(self.ignored)}"
        ]
        if self.by_position:
            pairs = [f"{old} -> {new}" for old, new in self.by_position]
            lines.append(f"  matched by position ({len(pairs)}): {some(pairs)}")
        if self.missing:
            lines.append(f"  missing from the checkpoint: {some(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in the model: {some(self.unexpected)}")
        for name, got, want in self.mismatched[:_SHOWN]:
            lines.append(f"  {name}: checkpoint {list(got)}, model needs {list(want)}")
        if len(self.mismatched) > _SHOWN:
            lines.append(f"  ... ({len(self.mismatched) - _SHOWN} more shape mismatches)")
        return "\n".join(lines)


def reference_shape(name, array_shape, target_shape):
    """The shape the model needs, written in the checkpoint's (PyTorch) layout.

    Convolutions `[kh, kw, in, out]` -> `[out, in, kh, kw]`; linears `[in,
    out]` -> `[out, in]` (plus the checkpoint's trailing 1x1). Families with
    other layouts (depthwise kernels) define their own `reference_shape`.

    Example:
    >>> reference_shape("head.weight", (64, 10), (64, 10))
    (10, 64)
    """
    del name  # the same rule for every tensor
    t = tuple(target_shape)
    if len(t) == 4 and len(array_shape) == 4:
        return (t[3], t[2], t[0], t[1])  # HWIO -> OIHW
    if len(t) == 2 and len(array_shape) >= 2:
        return (t[1], t[0]) + tuple(array_shape[2:])  # [in, out] -> [out, in(, 1, 1)]
    return t


def load_reference_weights(model, state_dict, strict=True):
    """Loads a reference state dict into `model`, whatever its family.

    Maps names, transposes PyTorch layouts to Keras ones and checks every
    tensor before assigning any, so a failed load changes nothing. Tensors
    the reference builds but never uses and batch-norm counters are expected.

    Args:
        model: a classifier (e.g. `Spikformer`) or its backbone, of the
            checkpoint's architecture.
        state_dict: mapping of reference names to arrays.
        strict: bool, raise on missing, unexpected or mis-shaped tensors.
            With `False`, load what matches and report the rest.

    Returns:
        A `LoadReport`.

    Raises:
        ValueError: a checkpoint of another family, or (strict) a compact
            report of what does not fit.

    Example:
    >>> report = load_reference_weights(model, read_state_dict("model_best.pth.tar"))
    """
    family = family_of_model(model)
    if not family.recognises(state_dict):
        try:
            other = family_of_state_dict(state_dict)[0].FAMILY
            what = f"a {other} checkpoint"
        except ValueError:
            what = "not a checkpoint of a supported family"
        raise ValueError(
            f"This is {what}, but the model is a {family.FAMILY} model: build the "
            "model of the checkpoint's family (keras-spikformer convert recognises it)."
        )
    by_position = []
    if hasattr(family, "prepare_state_dict"):  # e.g. old names matched by position
        state_dict, by_position = family.prepare_state_dict(model, state_dict)
    if hasattr(family, "check_state_dict"):
        family.check_state_dict(model, state_dict, strict)
    check_tensor_values(state_dict, family.is_ignored)
    needed_shape = getattr(family, "reference_shape", reference_shape)
    targets = family.reference_variable_map(model)
    layout = getattr(family, "to_keras_layout", to_keras_layout)
    canonical = getattr(family, "canonical_name", lambda name: name)
    assignments, report = [], LoadReport([], [], [], [], [], by_position)
    seen = set()
    for name, value in state_dict.items():
        if family.is_ignored(name):
            report.ignored.append(name)
            continue
        key = canonical(name)
        if key not in targets:
            report.unexpected.append(name)
            continue
        seen.add(key)
        variable = targets[key]
        want = tuple(variable.shape)
        array = layout(key, value, want)
        if tuple(array.shape) != want:
            report.mismatched.append(
                (name, tuple(np.shape(value)), needed_shape(key, np.shape(value), want))
            )
            continue
        assignments.append((variable, array))
        report.loaded.append(name)
    report.missing = sorted(set(targets) - seen)
    if strict and not report.ok:
        raise ValueError(
            "The checkpoint does not fit this model:\n" + report.describe() + "\n"
            "Check the architecture options (width, depth, heads, classes, image "
            "channels; CLI: --preset or --num-heads/--num-timesteps/--image-size), or "
            "call load_reference_weights(..., strict=False) to load what matches."
        )
    for variable, array in assignments:
        variable.assign(keras.ops.cast(array, variable.dtype))
    return report
