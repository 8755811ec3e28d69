"""Reference (zhouchenlin2096/QKFormer, PyTorch) names and shapes for the QKFormer family.

The reference names its modules `patch_embed{1,2,3}.<unit>_{conv,bn,lif}`,
`stage<s>.<j>.{tssa,attn,ssa}.{q,k,v,proj}_{conv,bn,lif}` (+ `attn_lif`),
`stage<s>.<j>.mlp.{fc1,fc2|mlp1,mlp2}_{conv,bn,lif}` and `head`; the unit
names of the patch embeddings differ per flavour (ImageNet `imagenet/qkformer.py`,
CIFAR `cifar10/model.py`, DVS `cifar10-dvs/model.py`).
"""

import re

import numpy as np

from keras_spikformer.convert.reference_weights import module_variables

FAMILY = "qkformer"

_IGNORED = re.compile(r"\.num_batches_tracked$")
# Reference unit names of each patch embedding's conv units, then the shortcut.
_STEM_UNITS = {
    "imagenet": ("proj", "proj1", "proj2"),
    "cifar": ("proj", "proj1"),
    "dvs": ("proj", "proj1", "proj2", "proj3"),
}
_DOWN_UNITS = {"imagenet": ("proj3", "proj4"), "cifar": ("proj3", "proj4"), "dvs": ("proj", "proj4")}  # fmt: skip
_SELF_ATTENTION = {"imagenet": "attn", "cifar": "ssa", "dvs": "ssa"}
_MLP_UNITS = {"imagenet": ("fc1", "fc2"), "cifar": ("mlp1", "mlp2"), "dvs": ("mlp1", "mlp2")}  # fmt: skip
# What the shapes cannot tell, per flavour (the reference training scripts).
FLAVOUR_DEFAULTS = {
    "imagenet": {"image_shape": [224, 224, 3], "num_timesteps": 4, "encoding": "direct"},
    "cifar": {"image_shape": [32, 32, 3], "num_timesteps": 4, "encoding": "direct", "num_heads": 8},
    "dvs": {"image_shape": [128, 128, 2], "num_timesteps": 16, "encoding": "frames", "num_heads": 16},
}  # fmt: skip


def _backbone(model):
    return getattr(model, "backbone", model)


def recognises(state_dict):
    """True when the tensor names are those of a QKFormer (Q-K token attention).

    `stage1.0.tssa.*` (the token attention) and `patch_embed1.proj_res_conv`
    (the strided shortcut) exist in every flavour and in no other family.
    """
    return (
        "stage1.0.tssa.q_conv.weight" in state_dict
        and "patch_embed1.proj_res_conv.weight" in state_dict
        and "head.weight" in state_dict
    )


def is_ignored(name):
    """Batch-norm counters; QKFormer has no built-but-unused parameters."""
    return bool(_IGNORED.search(name))


def reference_module_map(model):
    """Maps reference module names to the Keras layers that play their part.

    Args:
        model: a `QKFormer` or `QKFormerBackbone`.

    Returns:
        dict of reference module name (e.g. `stage1.0.tssa.attn_lif`) -> layer.

    Example:
    >>> lif = reference_module_map(model)["stage3.0.ssa.proj_lif"]
    """
    backbone = _backbone(model)
    flavour = backbone.flavour
    modules = {}

    def unit(prefix, layer):
        modules[f"{prefix}_conv"] = layer.synapse
        modules[f"{prefix}_bn"] = layer.bn
        modules[f"{prefix}_lif"] = layer.lif

    for s in range(1, len(backbone.stage_depths) + 1):
        embed = backbone.get_layer(f"patch_embed{s}")
        names = _STEM_UNITS[flavour] if s == 1 else _DOWN_UNITS[flavour]
        for name, layer in zip(names, embed.units, strict=True):
            unit(f"patch_embed{s}.{name}", layer)
        unit(f"patch_embed{s}.proj_res", embed.shortcut)
        for j in range(backbone.stage_depths[s - 1]):
            block = backbone.get_layer(f"stage{s}_block{j}")
            attn = "tssa" if block.attention == "token" else _SELF_ATTENTION[flavour]
            prefix = f"stage{s}.{j}.{attn}"
            for name in ("q", "k", "v", "proj"):
                if hasattr(block.attn, name):
                    unit(f"{prefix}.{name}", getattr(block.attn, name))
            modules[f"{prefix}.attn_lif"] = block.attn.attn_lif
            for ref, name in zip(_MLP_UNITS[flavour], ("fc1", "fc2"), strict=True):
                unit(f"stage{s}.{j}.mlp.{ref}", getattr(block.mlp, name))
    if backbone is not model:
        modules["head"] = model.get_layer("head")
    return modules


def reference_variable_map(model):
    """Maps reference parameter and buffer names to Keras variables.

    Example:
    >>> reference_variable_map(model)["stage1.0.tssa.q_conv.weight"]
    """
    out = module_variables(reference_module_map(model))
    return out


def to_keras_layout(name, array, target_shape):
    """PyTorch layout -> Keras: conv `[O, I, kh, kw]` -> `[kh, kw, I, O]`;
    Conv1d / 1x1 Conv2d / Linear `[O, I(, 1, 1)]` -> Dense `[I, O]`."""
    array = np.asarray(array)
    if name.endswith(".weight") and array.ndim == 4 and len(target_shape) == 4:
        return array.transpose(2, 3, 1, 0)
    if name.endswith(".weight") and len(target_shape) == 2:
        return array.reshape(array.shape[:2]).T
    return array


def flavour_of(state_dict):
    """`"imagenet"`, `"cifar"` or `"dvs"` from the patch-embedding unit names."""
    if "patch_embed1.proj3_conv.weight" in state_dict:
        return "dvs"
    if "patch_embed1.proj2_conv.weight" in state_dict:
        return "imagenet"
    return "cifar"


def _depths(state_dict):
    depths = []
    s = 1
    while any(k.startswith(f"stage{s}.") for k in state_dict):
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(rf"stage{s}\.(\d+)\.", k))}  # fmt: skip
        depths.append(max(blocks) + 1)
        s += 1
    return depths


def infer_architecture(state_dict, **given):
    """Backbone arguments and class count of a QKFormer checkpoint.

    The tensor names give the flavour and the blocks per stage; shapes give
    `hidden_dim`, `mlp_ratio`, the input channels and `num_classes`. The rest
    (`num_heads`, `num_timesteps`, image size, encoding) come from `given`,
    else from the flavour's reference defaults (ImageNet: `hidden_dim / 64`
    heads, T=4, 224x224; CIFAR: 8 heads, T=4, 32x32; DVS: 16 heads, T=16,
    128x128 frames).

    Args:
        state_dict: mapping of reference names to arrays.
        **given: `QKFormerBackbone` arguments that override what is inferred.

    Returns:
        `(backbone_config, num_classes, notes)`; notes maps each argument to
        where its value came from.

    Raises:
        ValueError: when the checkpoint is not a QKFormer one, or `given`
            contradicts its shapes.

    Example:
    >>> config, num_classes, notes = infer_architecture(read_state_dict(path))
    """
    if not recognises(state_dict):
        raise ValueError(
            "This checkpoint is not a QKFormer one (no `stage1.0.tssa.q_conv.weight` "
            "/ `patch_embed1.proj_res_conv.weight` tensors); convert it with its "
            "own family's converter."
        )
    flavour = flavour_of(state_dict)
    head = np.shape(state_dict["head.weight"])
    hidden_dim = _check_head(state_dict, head)
    depths = _depths(state_dict)
    mlp_name = _MLP_UNITS[flavour][0]
    stage1_width = int(np.shape(state_dict["stage1.0.tssa.q_conv.weight"])[0])
    mlp_inner = int(np.shape(state_dict[f"stage1.0.mlp.{mlp_name}_conv.weight"])[0])
    channels = int(np.shape(state_dict["patch_embed1.proj_conv.weight"])[1])
    defaults = dict(FLAVOUR_DEFAULTS[flavour])
    defaults.setdefault("num_heads", max(1, hidden_dim // 64))
    defaults["image_shape"] = defaults["image_shape"][:2] + [channels]
    found = {
        "flavour": flavour,
        "hidden_dim": hidden_dim,
        "stage_depths": depths,
        "mlp_ratio": mlp_inner / stage1_width,
    }
    notes = {k: "checkpoint tensor names/shapes" for k in found}
    for key, value in given.items():
        if key in found and found[key] != (list(value) if isinstance(value, tuple) else value):
            raise ValueError(
                f"`{key}={value!r}` contradicts the checkpoint, which has "
                f"{key}={found[key]!r}; drop the argument or pick the right checkpoint."
            )
    config = {**defaults, **found, **given}
    for key in config:
        if key not in notes:
            notes[key] = "given" if key in given else f"{flavour} reference default"
    return config, int(head[0]), notes


def _check_head(state_dict, head):
    """`hidden_dim`, the last stage's width; `head.weight` must read it."""
    last = max(
        int(m.group(1))
        for k in state_dict
        if (m := re.match(r"patch_embed(\d+)\.proj_res_conv\.weight$", k))
    )
    name = f"patch_embed{last}.proj_res_conv.weight"
    shortcut = np.shape(state_dict[name])
    width = int(shortcut[0]) if shortcut else None
    if len(head) == 2 and width in (None, int(head[1])):
        return int(head[1])
    if len(head) == 2 and int(head[0]) == width:
        problem = (
            "it looks transposed: PyTorch's Linear stores [num_classes, hidden_dim] "
            f"= [{int(head[1])}, {width}]. Save head.weight as the model has it (do "
            "not transpose it)"
        )
    else:
        problem = (
            f"it must be [num_classes, {width}]. The file was edited or mixes two "
            "models; use the checkpoint as the reference training script saved it"
        )
    raise ValueError(
        f"`head.weight` has shape {list(head)}, but the last stage has {width} "
        f"channels (`{name}` is {list(shortcut)}): {problem}."
    )
