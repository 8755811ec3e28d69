"""Loading reference (ZK-Zhou/spikformer, PyTorch) state dicts into Keras models."""

import dataclasses
import re

import keras
import numpy as np

# Reference parameters that exist but take no part in the forward pass.
_UNUSED = re.compile(
    r"^(block\.\d+\.norm[12]\.(weight|bias)|pos_embed|norm\.(weight|bias))$"
)
# Batch-norm bookkeeping that Keras does not keep.
_IGNORED = re.compile(r"\.num_batches_tracked$")
# ImageNet/DVS references name their 1x1 convolutions `*_conv`, CIFAR `*_linear`.
_CONV_SPELLING = re.compile(r"\.(attn\.(?:q|k|v|proj)|mlp\.(?:fc1|fc2))_conv\.")
_STAGE_SUFFIX = ("", "1", "2", "3")
_BN_KEYS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def _backbone(model):
    return getattr(model, "backbone", model)


def reference_module_map(model):
    """Maps reference module names to the Keras layers that play their part.

    Covers convolutions, linears, batch norms and every LIF neuron, e.g.
    `patch_embed.proj_conv1`, `block.0.attn.q_linear`, `block.0.attn.attn_lif`,
    `head`. 1x1 convolutions of the ImageNet/DVS references use the `_linear`
    spelling here.

    Args:
        model: a `Spikformer` or `SpikformerBackbone`.

    Returns:
        dict of reference module name -> Keras layer.

    Example:
    >>> lif = reference_module_map(model)["block.0.attn.q_lif"]
    """
    backbone = _backbone(model)
    modules = {}

    def unit(prefix, layer, synapse, bn, lif):
        modules[f"{prefix}{synapse}"] = layer.synapse
        modules[f"{prefix}{bn}"] = layer.bn
        modules[f"{prefix}{lif}"] = layer.lif

    sps = backbone.get_layer("patch_embed")
    for i, stage in enumerate(sps.stages):
        s = _STAGE_SUFFIX[i]
        unit("patch_embed.", stage, f"proj_conv{s}", f"proj_bn{s}", f"proj_lif{s}")
    unit("patch_embed.", sps.rpe, "rpe_conv", "rpe_bn", "rpe_lif")
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"block_{i}")
        for name in ("q", "k", "v", "proj"):
            layer = getattr(block.attn, name)
            unit(
                f"block.{i}.attn.", layer, f"{name}_linear", f"{name}_bn", f"{name}_lif"
            )
        modules[f"block.{i}.attn.attn_lif"] = block.attn.attn_lif
        for name in ("fc1", "fc2"):
            layer = getattr(block.mlp, name)
            unit(
                f"block.{i}.mlp.", layer, f"{name}_linear", f"{name}_bn", f"{name}_lif"
            )
    if backbone is not model:
        modules["head"] = model.get_layer("head")
    return modules


def reference_variable_map(model):
    """Maps reference parameter names (`_linear` spelling) to Keras variables.

    Example:
    >>> reference_variable_map(model)["head.weight"]  # the head's kernel
    """
    out = {}
    for module, layer in reference_module_map(model).items():
        if isinstance(layer, keras.layers.BatchNormalization):
            for ref, attr in _BN_KEYS.items():
                out[f"{module}.{ref}"] = getattr(layer, attr)
        elif hasattr(layer, "kernel"):
            out[f"{module}.weight"] = layer.kernel
            if getattr(layer, "use_bias", False):
                out[f"{module}.bias"] = layer.bias
    return out


def to_keras_layout(name, array, target_shape):
    """Transposes a reference tensor into the Keras layout of `target_shape`."""
    array = np.asarray(array)
    if name.endswith(".weight") and array.ndim == 4 and len(target_shape) == 4:
        return array.transpose(
            2, 3, 1, 0
        )  # conv [out, in, kh, kw] -> [kh, kw, in, out]
    if name.endswith(".weight") and len(target_shape) == 2:
        if array.ndim > 2 and all(d == 1 for d in array.shape[2:]):
            array = array.reshape(array.shape[:2])  # 1x1 conv [out, in, 1(, 1)]
        if array.ndim == 2:
            return array.T  # linear [out, in] -> dense [in, out]
    return array


def canonical_name(name):
    """The `_linear` spelling of a reference parameter name."""
    return _CONV_SPELLING.sub(lambda m: f".{m.group(1)}_linear.", name)


@dataclasses.dataclass
class LoadReport:
    """What `load_reference_weights` did with each reference tensor."""

    loaded: list
    missing: list
    unexpected: list
    mismatched: list
    ignored: list

    @property
    def ok(self):
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self):
        lines = [f"loaded {len(self.loaded)} tensors, ignored {len(self.ignored)}"]
        if self.missing:
            lines.append(
                f"missing from the checkpoint ({len(self.missing)}): {self.missing}"
            )
        if self.unexpected:
            lines.append(
                f"unexpected in the checkpoint ({len(self.unexpected)}): {self.unexpected}"
            )
        for name, want, got in self.mismatched:
            lines.append(
                f"shape mismatch for {name}: model needs {want}, checkpoint has {got}"
            )
        return "\n".join(lines)


def load_reference_weights(model, state_dict, strict=True):
    """Loads a reference Spikformer state dict into `model`.

    Maps names, transposes PyTorch layouts to Keras ones and checks every
    tensor before assigning any, so a failed load changes nothing. The
    reference's unused LayerNorms (`block.*.norm1/2`, DVS `pos_embed`, `norm`)
    and `num_batches_tracked` counters are expected extras.

    Args:
        model: a `Spikformer` (or `SpikformerBackbone`) of the same architecture.
        state_dict: mapping of reference names to arrays (numpy, or anything
            `numpy.asarray` takes).
        strict: bool, raise on missing, unexpected or mis-shaped tensors.
            With `False`, load what matches and report the rest.

    Returns:
        A `LoadReport`.

    Raises:
        ValueError: listing every missing, unexpected and mis-shaped name.

    Example:
    >>> report = load_reference_weights(model, dict(np.load("sd.npz")))
    """
    targets = reference_variable_map(model)
    assignments, report = [], LoadReport([], [], [], [], [])
    seen = set()
    for name, value in state_dict.items():
        if _IGNORED.search(name) or _UNUSED.match(name):
            report.ignored.append(name)
            continue
        key = canonical_name(name)
        if key not in targets:
            report.unexpected.append(name)
            continue
        seen.add(key)
        variable = targets[key]
        array = to_keras_layout(key, value, tuple(variable.shape))
        if tuple(array.shape) != tuple(variable.shape):
            report.mismatched.append(
                (name, tuple(variable.shape), tuple(np.shape(value)))
            )
            continue
        assignments.append((variable, array))
        report.loaded.append(name)
    report.missing = sorted(set(targets) - seen)
    if strict and not report.ok:
        raise ValueError(
            "The checkpoint does not fit this model:\n" + report.describe() + "\n"
            "Check the architecture (hidden_dim, num_layers, mlp_ratio, qkv_bias, "
            "num_classes, image channels) or pass strict=False to load what matches."
        )
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))
    return report
