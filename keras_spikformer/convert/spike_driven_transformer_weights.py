"""Reference (BICLab/Spike-Driven-Transformer, PyTorch) names and shapes for the SDT V1 family.

The reference model (`model/spikeformer.py`, `module/sps.py`, `module/ms_conv.py`)
names its tensors `patch_embed.proj_conv{,1,2,3}`, `patch_embed.rpe_conv`,
`block.<i>.attn.{q,k,v,proj}_conv`, `block.<i>.attn.talking_heads`,
`block.<i>.mlp.fc{1,2}_conv`, their `*_bn` batch norms, and `head`.
"""

import re

import numpy as np

from keras_spikformer.convert.reference_weights import module_variables

FAMILY = "spike_driven_transformer"

_STAGE_SUFFIX = ("", "1", "2", "3")
_IGNORED = re.compile(r"\.num_batches_tracked$")
_TALKING_HEADS = re.compile(r"^block\.\d+\.attn\.talking_heads\.weight$")
# Spikformer's unused LayerNorms: present in its checkpoints, absent from SDT's.
_SPIKFORMER_ONLY = re.compile(r"^block\.\d+\.norm[12]\.")
_REQUIRED = (
    "patch_embed.proj_conv.weight",
    "patch_embed.proj_conv3.weight",
    "patch_embed.rpe_conv.weight",
    "block.0.attn.q_conv.weight",
    "block.0.mlp.fc1_conv.weight",
    "head.weight",
)
# What the shapes cannot tell, by input channels and classes (spec table).
FAMILY_DEFAULTS = {
    "imagenet": {"image_shape": [224, 224, 3], "pooling": "1111", "num_timesteps": 4, "erode": False, "encoding": "direct"},
    "cifar": {"image_shape": [32, 32, 3], "pooling": "0011", "num_timesteps": 4, "erode": False, "encoding": "direct"},
    "dvsgesture": {"image_shape": [128, 128, 2], "pooling": "0111", "num_timesteps": 16, "erode": False, "encoding": "frames"},
    "cifar10dvs": {"image_shape": [64, 64, 2], "pooling": "0011", "num_timesteps": 10, "erode": True, "encoding": "frames"},
}  # fmt: skip


def _backbone(model):
    return getattr(model, "backbone", model)


def recognises(state_dict):
    """True when the tensor names are those of a Spike-driven Transformer V1.

    SDT V1 shares Spikformer ImageNet's tensor names but has the built, never
    applied `block.<i>.attn.talking_heads.weight` and none of Spikformer's
    unused LayerNorms (`block.<i>.norm1`); SDT V2 and QKFormer name their
    layers differently. A checkpoint that has the SDT layout but lost its
    talking-heads weights is still recognised, so that `check_state_dict`
    can say what is missing.
    """
    if not all(k in state_dict for k in _REQUIRED):
        return False
    if any(_TALKING_HEADS.match(k) for k in state_dict):
        return True
    return not any(_SPIKFORMER_ONLY.match(k) for k in state_dict)


def check_state_dict(model, state_dict, strict=True):
    """Raises a clear error when the talking-heads weights are missing (strict).

    Every reference SDT V1 checkpoint holds them; without them the file was
    edited or is a Spikformer checkpoint stripped of its LayerNorms.
    """
    backbone = _backbone(model)
    missing = [
        f"block.{i}.attn.talking_heads.weight"
        for i in range(backbone.num_layers)
        if f"block.{i}.attn.talking_heads.weight" not in state_dict
    ]
    if strict and missing:
        raise ValueError(
            f"The checkpoint lacks {len(missing)} talking-heads weight(s) "
            f"({missing[:3]}...): every reference Spike-driven Transformer checkpoint "
            "holds `block.<i>.attn.talking_heads.weight` (built, never applied). "
            "Use the checkpoint file as the reference training script saved it, or "
            "pass strict=False to load the rest (the talking-heads weights keep "
            "their initial values; they take no part in the forward pass)."
        )


def is_ignored(name):
    """Names present in reference checkpoints that are not loaded (BN counters)."""
    return bool(_IGNORED.search(name))


def reference_module_map(model):
    """Maps reference module names to the Keras layers that play their part.

    Covers convolutions, batch norms and every neuron that runs, e.g.
    `patch_embed.proj_conv1`, `patch_embed.proj_lif3` (the RPE's input
    neuron), `block.0.attn.shortcut_lif`, `block.0.attn.talking_heads_lif`,
    `block.0.mlp.fc1_lif`, `head_lif`, `head`. The reference's never-called
    neurons (`patch_embed.rpe_lif`, `block.<i>.attn.attn_lif`) have no entry.

    Args:
        model: a `SpikeDrivenTransformer` or `SpikeDrivenTransformerBackbone`.

    Returns:
        dict of reference module name -> Keras layer.

    Example:
    >>> lif = reference_module_map(model)["block.0.attn.talking_heads_lif"]
    """
    backbone = _backbone(model)
    modules = {}
    stem = backbone.get_layer("patch_embed")
    for i, stage in enumerate(stem.stages):
        s = _STAGE_SUFFIX[i]
        modules[f"patch_embed.proj_conv{s}"] = stage.synapse
        modules[f"patch_embed.proj_bn{s}"] = stage.bn
        modules[f"patch_embed.proj_lif{s}"] = stage.lif
    modules["patch_embed.proj_conv3"] = stem.stage_3_conv
    modules["patch_embed.proj_bn3"] = stem.stage_3_bn
    modules["patch_embed.proj_lif3"] = stem.rpe.lif
    modules["patch_embed.rpe_conv"] = stem.rpe.conv
    modules["patch_embed.rpe_bn"] = stem.rpe.bn
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"block_{i}")
        attn, mlp = block.attn, block.mlp
        prefix = f"block.{i}.attn."
        modules[prefix + "shortcut_lif"] = attn.shortcut_lif
        for name in ("q", "k", "v"):
            unit = getattr(attn, name)
            modules[f"{prefix}{name}_conv"] = unit.synapse
            modules[f"{prefix}{name}_bn"] = unit.bn
            modules[f"{prefix}{name}_lif"] = unit.lif
        modules[prefix + "talking_heads_lif"] = attn.talking_heads_lif
        modules[prefix + "proj_conv"] = attn.proj
        modules[prefix + "proj_bn"] = attn.proj_bn
        for name in ("fc1", "fc2"):
            for part in ("lif", "bn"):
                modules[f"block.{i}.mlp.{name}_{part}"] = getattr(mlp, f"{name}_{part}")
            modules[f"block.{i}.mlp.{name}_conv"] = getattr(mlp, name)
    if backbone is not model:
        modules["head_lif"] = model.get_layer("head_lif")
        modules["head"] = model.get_layer("head")
    return modules


def reference_variable_map(model):
    """Maps reference parameter and buffer names to Keras variables.

    Includes the unused `block.<i>.attn.talking_heads.weight` (so checkpoints
    load completely and parameter counts match).

    Example:
    >>> reference_variable_map(model)["block.0.attn.talking_heads.weight"]
    """
    out = module_variables(reference_module_map(model))
    backbone = _backbone(model)
    for i in range(backbone.num_layers):
        attn = backbone.get_layer(f"block_{i}").attn
        out[f"block.{i}.attn.talking_heads.weight"] = attn.talking_heads
    return out


def to_keras_layout(name, array, target_shape):
    """Transposes a reference tensor into the Keras layout of `target_shape`.

    Conv2d `[out, in, kh, kw]` -> `[kh, kw, in, out]`; 1x1 Conv2d and Linear
    `[out, in(, 1, 1)]` -> `[in, out]`; Conv1d `[out, in, k]` -> `[k, in, out]`.
    """
    array = np.asarray(array)
    if not name.endswith(".weight"):
        return array
    if array.ndim == 4 and len(target_shape) == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 3 and len(target_shape) == 3:
        return array.transpose(2, 1, 0)
    if len(target_shape) == 2 and array.ndim >= 2:
        if all(d == 1 for d in array.shape[2:]):
            return array.reshape(array.shape[:2]).T
    return array


def family_of(state_dict):
    """Which dataset branch the shapes point to (`FAMILY_DEFAULTS` key)."""
    channels = int(np.shape(state_dict["patch_embed.proj_conv.weight"])[1])
    classes = int(np.shape(state_dict["head.weight"])[0])
    if channels == 2:
        return "dvsgesture" if classes == 11 else "cifar10dvs"
    if classes >= 1000:
        return "imagenet"
    return "cifar"


def infer_architecture(state_dict, **given):
    """Works out `SpikeDrivenTransformerBackbone` arguments from a reference state dict.

    Shapes give width, depth, heads (from the talking-heads weight), MLP
    ratio, classes and input channels. The image size, pooling pattern, time
    steps, erode flag and encoding come from `given`, else from the dataset
    branch the shapes point to (3 input channels and 1000 classes: ImageNet;
    3 channels otherwise: CIFAR; 2 channels and 11 classes: DVS128 Gesture;
    2 channels otherwise: CIFAR10-DVS), as in the reference configs.

    Args:
        state_dict: reference names -> arrays (prefix already removed).
        **given: backbone arguments to use as they are (e.g. `num_timesteps=2`,
            `image_shape=(288, 288, 3)`, `pooling="0011"`).

    Returns:
        `(backbone_config, num_classes, notes)`; `notes` maps each argument
        to where it came from (`"shapes"`, `"given"`, `"default (<branch>)"`).

    Raises:
        ValueError: when the state dict is not an SDT V1 one, naming what
            is missing.

    Example:
    >>> config, classes, notes = infer_architecture(state_dict, num_timesteps=4)
    """
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        raise ValueError(
            f"This checkpoint is not a Spike-driven Transformer (V1): it lacks "
            f"{missing} (its first keys are {sorted(state_dict)[:6]}). Convert "
            "BICLab/Spike-Driven-Transformer checkpoints with this family."
        )
    if "block.0.attn.talking_heads.weight" not in state_dict:
        raise ValueError(
            "The checkpoint lacks `block.0.attn.talking_heads.weight`, which every "
            "reference SDT V1 checkpoint holds (built, never applied); its shape "
            "gives the head count. The file looks truncated or edited: re-export it "
            "from the reference model's state_dict(), or pass num_heads=... and "
            "load with strict=False."
        )
    shape = lambda k: tuple(int(d) for d in np.shape(state_dict[k]))  # noqa: E731
    width = shape("patch_embed.proj_conv3.weight")[0]
    blocks = sorted(
        {int(m.group(1)) for k in state_dict if (m := re.match(r"block\.(\d+)\.", k))}
    )
    if blocks != list(range(len(blocks))):
        raise ValueError(f"Blocks are numbered {blocks}; expected 0..L-1.")
    branch = family_of(state_dict)
    defaults = FAMILY_DEFAULTS[branch]
    found = {
        "hidden_dim": width,
        "num_layers": len(blocks),
        "num_heads": shape("block.0.attn.talking_heads.weight")[0],
        "mlp_ratio": shape("block.0.mlp.fc1_conv.weight")[0] / width,
    }
    config, notes = dict(found), dict.fromkeys(found, "shapes")
    for key in found:
        if given.get(key) is not None:
            config[key], notes[key] = given[key], "given"
    channels = shape("patch_embed.proj_conv.weight")[1]
    for key, value in defaults.items():
        if given.get(key) is not None:
            config[key], notes[key] = given[key], "given"
        else:
            config[key], notes[key] = value, f"default ({branch})"
    if notes["image_shape"] != "given":
        config["image_shape"] = [*config["image_shape"][:2], channels]
    for key, value in given.items():
        if key not in config and value is not None:
            config[key], notes[key] = value, "given"
    num_classes = shape("head.weight")[0]
    notes["num_classes"] = "shapes"
    notes["family"] = f"{FAMILY}, {branch} branch"
    return config, num_classes, notes
