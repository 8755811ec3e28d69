"""Reference (BICLab/Spike-Driven-Transformer-V3) names and shapes for E-SpikeFormer Base.

The Large family's converter (`e_spikeformer_large_weights`) shares the
module maps below; each family module has its own `recognises` and
`infer_architecture`.
"""

import re

from keras_spikformer.convert.meta_spikeformer_weights import (
    _parts,
    is_ignored,
    to_keras_layout,
)
from keras_spikformer.convert.reference_weights import module_variables

FAMILY = "e_spikeformer (Spike-driven Transformer V3, Base)"

_CONV_BLOCKS = {
    "ConvBlock1_1.0": "conv_block1_1",
    "ConvBlock1_2.0": "conv_block1_2",
    "ConvBlock2_1.0": "conv_block2_1",
    "ConvBlock2_2.0": "conv_block2_2",
}
# Base: BN after the depthwise conv (V2's SepConv has none) and plain 1x1 q/k/v.
_BASE_SIGNATURE = (
    "downsample1_1.encode_conv.weight",
    "ConvBlock1_1.0.Conv.dwconv.0.weight",
    "ConvBlock1_1.0.Conv.dwconv.1.weight",
)
# What the shapes cannot tell, with the released models' values.
DEFAULTS = {"num_heads": 8, "image_size": 224, "spike_levels": 4}

__all__ = ["is_ignored", "to_keras_layout"]


def recognises(state_dict):
    """True when the tensor names are those of a reference E-SpikeFormer Base."""
    return all(name in state_dict for name in _BASE_SIGNATURE)


def _sep_conv(prefix, sep, modules):
    for i in (1, 2, 3):
        modules[f"{prefix}.spike{i}"] = getattr(sep, f"spike{i}")
    for ref, conv, bn in (("pwconv1", "pwconv1", "bn1"), ("dwconv", "dwconv", "bn2"),
                          ("pwconv2", "pwconv2", "bn3")):  # fmt: skip
        modules[f"{prefix}.{ref}.0"] = getattr(sep, conv)
        modules[f"{prefix}.{ref}.1"] = getattr(sep, bn)


def _mlp(prefix, mlp, modules, suffix):
    for i in (1, 2):
        modules[f"{prefix}.fc{i}_conv"] = getattr(mlp, f"fc{i}")
        modules[f"{prefix}.fc{i}_bn"] = getattr(mlp, f"fc{i}_bn")
        modules[f"{prefix}.fc{i}_{suffix}"] = getattr(mlp, f"fc{i}_spike")


def _downsampling(backbone, names, modules, suffix):
    for name in names:
        layer = backbone.get_layer(name)
        modules[f"{name}.encode_conv"] = layer.conv
        modules[f"{name}.encode_bn"] = layer.bn
        if layer.spike is not None:
            modules[f"{name}.encode_{suffix}"] = layer.spike


def base_module_map(backbone, task):
    """Reference module name -> Keras layer for a Base model (neurons included)."""
    modules = {}
    _downsampling(backbone, ("downsample1_1", "downsample1_2", "downsample2",
                             "downsample3", "downsample4"), modules, "spike")  # fmt: skip
    for ref, ours in _CONV_BLOCKS.items():
        block = backbone.get_layer(ours)
        _sep_conv(f"{ref}.Conv", block.sep, modules)
        for attr in ("spike1", "conv1", "bn1", "spike2", "conv2", "bn2"):
            modules[f"{ref}.{attr}"] = getattr(block, attr)
    for stage, depth in ((3, backbone.num_layers[0]), (4, backbone.num_layers[1])):
        for j in range(depth):
            block = backbone.get_layer(f"block{stage}_{j}")
            prefix, attn = f"block{stage}.{j}", block.attn
            _sep_conv(f"{prefix}.conv", block.conv, modules)
            for name in ("q", "k", "v", "proj"):
                modules[f"{prefix}.attn.{name}_conv.0"] = getattr(attn, f"{name}_conv")
                modules[f"{prefix}.attn.{name}_conv.1"] = getattr(attn, f"{name}_bn")
            for name in ("head", "q", "k", "v", "attn"):
                modules[f"{prefix}.attn.{name}_spike"] = getattr(attn, f"{name}_spike")
            _mlp(f"{prefix}.mlp", block.mlp, modules, "spike")
    if task is not None:
        modules["spike"] = task.head_spike
        modules["head"] = task.head
    return modules


def large_module_map(backbone, task):
    """Reference module name -> Keras layer for a Large model (neurons included)."""
    modules = {}
    _downsampling(backbone, ("downsample1_1", "downsample1_2", "downsample2",
                             "downsample3"), modules, "lif")  # fmt: skip
    for ref, ours in _CONV_BLOCKS.items():
        block = backbone.get_layer(ours)
        for i in (1, 2):
            modules[f"{ref}.neuron{i}"] = getattr(block, f"spike{i}")
            modules[f"{ref}.conv{i}.0.0"] = getattr(block, f"conv{i}")
            modules[f"{ref}.conv{i}.0.1"] = getattr(block, f"bn{i}")
    for j in range(backbone.num_layers):
        block = backbone.get_layer(f"block3_{j}")
        prefix, attn = f"block3.{j}", block.attn
        modules[f"{prefix}.lif"] = block.spike
        if block.rep_conv is not None:
            for i in (1, 2):
                modules[f"{prefix}.rep_conv.conv{i}.0"] = getattr(
                    block.rep_conv, f"conv{i}"
                )
                modules[f"{prefix}.rep_conv.conv{i}.1"] = getattr(
                    block.rep_conv, f"bn{i}"
                )
        for name in ("q", "k", "v", "proj"):
            rep = getattr(attn, f"{name}_conv")
            for i in (1, 2):
                modules[f"{prefix}.attn.{name}_conv.0.conv{i}.0"] = getattr(
                    rep, f"conv{i}"
                )
                modules[f"{prefix}.attn.{name}_conv.0.conv{i}.1"] = getattr(
                    rep, f"bn{i}"
                )
            modules[f"{prefix}.attn.{name}_conv.1"] = getattr(attn, f"{name}_bn")
        for name in ("head", "q", "k", "v", "attn"):
            modules[f"{prefix}.attn.{name}_lif"] = getattr(attn, f"{name}_spike")
        _mlp(f"{prefix}.mlp", block.mlp, modules, "lif")
    if task is not None:
        modules["lif"] = task.head_spike
        modules["head"] = task.head
        if task.head_kd is not None:
            modules["head_kd"] = task.head_kd
    return modules


def reference_module_map(model):
    """Maps reference module names to the Keras layers that play their part.

    Args:
        model: an `ESpikeFormer` (Base or Large) or one of its backbones.

    Returns:
        dict of reference module name -> Keras layer, neurons included
        (`block3.0.attn.q_spike` (Base), `block3.0.attn.q_lif` (Large), ...).

    Example:
    >>> sn = reference_module_map(model)["block3.0.attn.attn_spike"]
    """
    backbone, task = _parts(model)
    if type(backbone).__name__ == "ESpikeFormerLargeBackbone":
        return large_module_map(backbone, task)
    return base_module_map(backbone, task)


def reference_variable_map(model):
    """Maps reference parameter and buffer names to Keras variables.

    Example:
    >>> reference_variable_map(model)["head.weight"]  # the head's kernel
    """
    out = module_variables(reference_module_map(model))
    backbone = _parts(model)[0]
    if type(backbone).__name__ == "ESpikeFormerLargeBackbone":
        for j in range(backbone.num_layers):
            block = backbone.get_layer(f"block3_{j}")
            out[f"block3.{j}.layer_scale1"] = block.layer_scale1
            out[f"block3.{j}.layer_scale2"] = block.layer_scale2
    return out


def block_depths(state_dict, stages):
    """Transformer blocks per stage from the `block{stage}.{j}.` names."""
    depths = []
    for stage in stages:
        found = {int(m.group(1)) for k in state_dict
                 if (m := re.match(rf"block{stage}\.(\d+)\.", k))}  # fmt: skip
        if found != set(range(len(found))):
            raise ValueError(
                f"Stage-{stage} blocks in the checkpoint are numbered {sorted(found)}; "
                "expected 0..n-1."
            )
        depths.append(len(found))
    return depths


def apply_given(config, notes, fallback, given):
    """Fills `config` from `given`, else `fallback`, noting where each came from."""
    for key, value in fallback.items():
        if given.get(key) is not None:
            config[key], notes[key] = given[key], "given"
        else:
            config[key], notes[key] = value, "default"
    for key, value in given.items():
        if key not in config and value is not None:
            config[key], notes[key] = value, "given"


def infer_architecture(state_dict, **given):
    """Works out `ESpikeFormerBaseBackbone` arguments from a reference state dict.

    Shapes give the widths, blocks per stage, MLP ratio, value expansion,
    classes and input channels; heads, `spike_levels` and the image size
    come from `given`, else the released models' values (8, 4, 224x224).

    Args:
        state_dict: reference names -> arrays.
        **given: backbone arguments to use as they are.

    Returns:
        `(config, num_classes, notes)`; `notes` says where each value came from.

    Example:
    >>> config, classes, notes = infer_architecture(sd, image_shape=(64, 64, 3))
    """
    if not recognises(state_dict):
        raise ValueError(
            f"This checkpoint is not a reference E-SpikeFormer Base: it lacks some of "
            f"{list(_BASE_SIGNATURE)} (its first keys are {sorted(state_dict)[:6]})."
        )
    w = [int(state_dict[f"{n}.encode_conv.weight"].shape[0])
         for n in ("downsample1_2", "downsample2", "downsample3", "downsample4")]  # fmt: skip
    depths = block_depths(state_dict, (3, 4))
    config = {"widths": w, "num_layers": depths}
    if depths[0]:
        config["mlp_ratio"] = state_dict["block3.0.mlp.fc1_conv.weight"].shape[0] / w[2]
        config["value_expansion"] = int(
            state_dict["block3.0.attn.v_conv.0.weight"].shape[0] // w[2]
        )
    notes = {key: "shapes" for key in config}
    channels = int(state_dict["downsample1_1.encode_conv.weight"].shape[1])
    size = DEFAULTS["image_size"]
    fallback = {"num_heads": DEFAULTS["num_heads"], "spike_levels": DEFAULTS["spike_levels"],
                "image_shape": [size, size, channels]}  # fmt: skip
    apply_given(config, notes, fallback, given)
    notes["num_classes"] = "shapes"
    return config, int(state_dict["head.weight"].shape[0]), notes
