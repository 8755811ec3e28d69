"""Reference (bic-L/MaxFormer, PyTorch) names and shapes for the Max-Former family.

Current names (`imagenet/max_former.py`): `patch_embed1.embed{1..4}.embed_{conv,bn}`,
`patch_embed{2,3}.{max_embed1,embed1,max_embed2}.embed_{conv,bn}`,
`stage1.0.mixer.conv5*` (7x7), `stage2.j.mixer.conv*` (5x5),
`stage3.j.attn.{x_lif,q,k,v,attn_lif,proj}_*`, `stageS.j.mlp.fc{1,2}_*`, `head`.
The released checkpoints carry older names inside `patch_embed*`; they are
matched by position there (see `positional_names`), by name elsewhere.
MS-QKFormer lives in `ms_qkformer_weights`; its helpers are shared here.
"""

import re

import numpy as np

from keras_spikformer.convert.reference_weights import module_variables

FAMILY = "maxformer"
# What the shapes cannot tell (the reference ImageNet training script).
DEFAULTS = {
    "imagenet": {"image_shape": [224, 224, 3], "num_timesteps": 4, "encoding": "direct"},
    "cifar": {"image_shape": [32, 32, 3], "num_timesteps": 4, "encoding": "direct", "num_heads": 8},
    "dvs": {"image_shape": [128, 128, 2], "num_timesteps": 16, "encoding": "frames", "num_heads": 16},
}  # fmt: skip

_IGNORED = re.compile(r"\.num_batches_tracked$")
_STEM = ("embed1", "embed2", "embed3", "embed4")
_DOWN = ("max_embed1", "embed1", "max_embed2")
_MIXER = {
    7: ("conv5", "conv5_bn", "conv5_neuron"),
    5: ("conv", "conv_bn", "conv_neuron"),
    3: ("conv", "conv_bn", "conv_neuron"),
}


def _backbone(model):
    return getattr(model, "backbone", model)


def recognises(state_dict):
    """True for Max-Former names: its 7x7 stage-1 mixer, or (CIFAR) `Embed_Max`.

    `stage1.0.mixer.conv5.weight` exists in current and old-name ImageNet
    files alike (old names differ only inside `patch_embed*`) and in no other
    family; the CIFAR file has `patch_embed2.max_embed2` instead.
    """
    return "head.weight" in state_dict and (
        "stage1.0.mixer.conv5.weight" in state_dict
        or "patch_embed2.max_embed2.embed_conv.weight" in state_dict
    )


def is_ignored(name):
    """Batch-norm counters; every other tensor is used."""
    return bool(_IGNORED.search(name))


def _unit(modules, prefix, layer, conv="conv", bn="bn", lif=None):
    modules[f"{prefix}{conv}"] = layer.synapse
    modules[f"{prefix}{bn}"] = layer.bn
    if lif is not None:
        modules[f"{prefix}{lif}"] = layer.lif


def add_stage(modules, backbone, s):
    """The mixers (or attention) and MLPs of every block of stage `s`."""
    for j in range(backbone.stage_depths[s - 1]):
        block = backbone.get_layer(f"stage{s}_block{j}")
        prefix = f"stage{s}.{j}"
        attn = block.mixer
        if block.mixer_type == "ssa":
            modules[f"{prefix}.attn.x_lif"] = attn.x_lif
            for name in ("q", "k", "v"):
                _unit(modules, f"{prefix}.attn.{name}_", getattr(attn, name), lif="lif")
            modules[f"{prefix}.attn.attn_lif"] = attn.attn_lif
            _unit(modules, f"{prefix}.attn.proj_", attn.proj)
        elif block.mixer_type == "qka":
            modules[f"{prefix}.attn.proj_lif"] = attn.input_lif
            for name in ("q", "k"):
                _unit(modules, f"{prefix}.attn.{name}_", getattr(attn, name), lif="lif")
            modules[f"{prefix}.attn.attn_lif"] = attn.attn_lif
            _unit(modules, f"{prefix}.attn.proj_", attn.proj)
        elif block.mixer_type != "none":
            conv, bn, lif = _MIXER[int(block.mixer_type[3:])]
            _unit(modules, f"{prefix}.mixer.", block.mixer, conv, bn, lif)
        for i in (1, 2):
            modules[f"{prefix}.mlp.fc{i}_lif"] = getattr(block.mlp, f"fc{i}_lif")
            modules[f"{prefix}.mlp.fc{i}_conv"] = getattr(block.mlp, f"fc{i}")
            modules[f"{prefix}.mlp.fc{i}_bn"] = getattr(block.mlp, f"fc{i}_bn")


def finish(modules, model, backbone):
    """Stages in the reference's state-dict order, then the head."""
    for s in range(1, len(backbone.stage_depths) + 1):
        add_stage(modules, backbone, s)
    if backbone is not model:
        modules["head_lif"] = model.head_lif
        modules["head"] = model.get_layer("head")
    return modules


def add_cifar_stem(modules, stem):
    """The CIFAR `Embed_Orig` of both families: `proj_*`, `embed1`, `embed2`.

    Its `embed2.embed_lif` fires on the same input as `embed1.embed_lif`
    (identical spikes); the port runs one neuron, mapped to `embed1`.
    """
    _unit(modules, "patch_embed1.", stem.conv0, "proj_conv", "proj_bn")
    _unit(
        modules,
        "patch_embed1.embed1.",
        stem.conv1,
        "embed_conv",
        "embed_bn",
        "embed_lif",
    )
    _unit(modules, "patch_embed1.embed2.", stem.shortcut, "embed_conv", "embed_bn")


def flavour_of(state_dict):
    """`"cifar"` for the CIFAR stem (`Embed_Orig`: `proj_conv` then `embed1`)."""
    if "patch_embed1.max_embed3.embed_conv.weight" in state_dict:
        return "dvs"  # `Embed_Max_plus`
    cifar = {"patch_embed1.proj_conv.weight", "patch_embed1.embed1.embed_conv.weight"}
    return "cifar" if cifar <= set(state_dict) else "imagenet"


def reference_module_map(model):
    """Maps reference module names to the Keras layers that play their part.

    Ordered as the reference state dict (embeddings, then stages, then head).

    Args:
        model: a `MaxFormer` or `MaxFormerBackbone`.

    Returns:
        dict of reference module name (e.g. `stage3.0.attn.x_lif`) -> layer.

    Example:
    >>> lif = reference_module_map(model)["patch_embed2.max_embed1.embed_lif"]
    """
    backbone = _backbone(model)
    modules = {}
    stem = backbone.get_layer("patch_embed1")
    if backbone.flavour == "cifar":
        add_cifar_stem(modules, stem)
    elif backbone.flavour == "dvs":  # `Embed_Max_plus`
        _unit(modules, "patch_embed1.", stem.conv0, "proj_conv", "proj_bn")
        for i, unit in enumerate(stem.units, start=1):
            prefix = f"patch_embed1.max_embed{i}."
            _unit(modules, prefix, unit, "embed_conv", "embed_bn", "embed_lif")
        _unit(modules, "patch_embed1.embed1.", stem.shortcut, "embed_conv", "embed_bn")
    else:
        for name, unit in zip(_STEM, (stem.conv0, stem.conv1, stem.conv2, stem.shortcut), strict=True):  # fmt: skip
            lif = "embed_lif" if unit.fire_input else None
            _unit(modules, f"patch_embed1.{name}.", unit, "embed_conv", "embed_bn", lif)
    for s in range(2, len(backbone.stage_depths) + 1):
        down = backbone.get_layer(f"patch_embed{s}")
        for name, unit in zip(_DOWN, (down.conv0, down.conv1, down.shortcut), strict=True):  # fmt: skip
            lif = "embed_lif" if unit.fire_input else None
            _unit(
                modules, f"patch_embed{s}.{name}.", unit, "embed_conv", "embed_bn", lif
            )
    return finish(modules, model, backbone)


def reference_variable_map(model):
    """Maps reference parameter and buffer names to Keras variables, in
    the reference state-dict order.

    Example:
    >>> reference_variable_map(model)["stage1.0.mixer.conv5.weight"]
    """
    return module_variables(reference_module_map(model))


def to_keras_layout(name, array, target_shape):
    """PyTorch layout -> Keras: conv `[O, I, kh, kw]` -> `[kh, kw, I, O]`;
    depth-wise `[C, 1, k, k]` -> `[k, k, C, 1]`; Conv1d / 1x1 Conv2d / Linear
    `[O, I(, 1, 1)]` -> Dense `[I, O]`."""
    array = np.asarray(array)
    if name.endswith(".weight") and array.ndim == 4 and len(target_shape) == 4:
        if ".mixer." in name:
            return array.transpose(2, 3, 0, 1)
        return array.transpose(2, 3, 1, 0)
    if name.endswith(".weight") and len(target_shape) == 2 and array.ndim >= 2:
        return array.reshape(array.shape[:2]).T
    return array


def positional_names(model, state_dict, layout=to_keras_layout):
    """Renames old-name tensors inside `patch_embed*` by position, safely.

    Names the model knows map by name. Inside each `patch_embed<k>.` prefix,
    the checkpoint's remaining tensors, in file order, map one to one onto
    the model's remaining names, in the reference state-dict order (what the
    reference's own `load_old_ckpt` does), and every shape must match. Any
    other unknown name, a count or a shape that differs, refuses the file.

    Args:
        model: the target model (classifier or backbone).
        state_dict: mapping of reference names to arrays (file order).
        layout: the family's `to_keras_layout`.

    Returns:
        `(renamed state dict, [(checkpoint name, model name), ...])`, the
        second listing every pair matched by position (empty for a file with
        current names).

    Raises:
        ValueError: naming the first tensor that does not fit.

    Example:
    >>> renamed, by_position = positional_names(model, read_state_dict(path))
    """
    targets = reference_variable_map_of(model)
    renamed, by_position = {}, []
    leftovers = {}
    for name, value in state_dict.items():
        if is_ignored(name) or name in targets:
            renamed[name] = value
            continue
        prefix = re.match(r"(patch_embed\d+)\.", name)
        if prefix is None:
            raise ValueError(
                f"Tensor {name!r} is not a {FAMILY} name and lies outside the patch "
                "embeddings, where only names are trusted; this is not a checkpoint of "
                "this architecture."
            )
        leftovers.setdefault(prefix.group(1), []).append(name)
    for prefix, names in leftovers.items():
        wanted = [
            key for key in targets
            if key.startswith(prefix + ".") and key not in state_dict
        ]  # fmt: skip
        if len(wanted) != len(names):
            raise ValueError(
                f"{prefix}: the checkpoint has {len(names)} tensors under names this "
                f"model does not use, the model misses {len(wanted)}; they cannot be "
                f"matched by position (first unknown: {names[0]!r})."
            )
        for old, new in zip(names, wanted, strict=True):
            want = tuple(targets[new].shape)
            got = layout(new, state_dict[old], want)
            if tuple(got.shape) != want:
                raise ValueError(
                    f"{old!r} (shape {list(np.shape(state_dict[old]))}) would load by "
                    f"position into {new!r}, which needs another shape; the file is "
                    "refused (it is not this architecture, or its order differs)."
                )
            renamed[new] = state_dict[old]
            by_position.append((old, new))
    return renamed, by_position


def reference_variable_map_of(model):
    """The variable map of `model`'s own family (Max-Former or MS-QKFormer)."""
    from keras_spikformer.convert.families import family_of_model

    return family_of_model(model).reference_variable_map(model)


def prepare_state_dict(model, state_dict):
    """Hook of `load_reference_weights`: old names -> current ones by position.

    Returns:
        `(state dict with current names, pairs matched by position)`.
    """
    return positional_names(model, state_dict)


def count_blocks(state_dict, stage):
    blocks = {
        int(m.group(1))
        for k in state_dict
        if (m := re.match(rf"stage{stage}\.(\d+)\.", k))
    }
    return max(blocks) + 1 if blocks else 0


def infer_common(state_dict, family, given):
    """Backbone arguments from the names and shapes both families share."""
    head = np.shape(state_dict["head.weight"])
    hidden_dim = int(head[1])
    flavour = flavour_of(state_dict)
    stages = range(1, (2 if flavour == "dvs" else 3) + 1)
    inner = int(np.shape(state_dict[f"stage{stages[-1]}.0.mlp.fc1_conv.weight"])[0])
    found = {
        "hidden_dim": hidden_dim,
        "stage_depths": [count_blocks(state_dict, s) for s in stages],
        "mlp_ratio": inner / hidden_dim,
        "flavour": flavour,
    }
    stem = [
        k for k in state_dict if k.startswith("patch_embed1.") and k.endswith("weight")
    ]
    channels = int(np.shape(state_dict[stem[0]])[1])
    defaults = {"num_heads": max(1, hidden_dim // 64), **DEFAULTS[flavour]}
    defaults["image_shape"] = defaults["image_shape"][:2] + [channels]
    notes = {k: "checkpoint tensor names/shapes" for k in found}
    for key, value in given.items():
        if key in found and found[key] != (
            list(value) if isinstance(value, tuple) else value
        ):
            raise ValueError(
                f"`{key}={value!r}` contradicts the checkpoint, which has "
                f"{key}={found[key]!r}; drop the argument or pick the right checkpoint."
            )
    config = {**defaults, **found, **given}
    for key in config:
        if key not in notes:
            notes[key] = "given" if key in given else f"{family} reference default"
    return config, int(head[0]), notes


def infer_architecture(state_dict, **given):
    """Backbone arguments and class count of a Max-Former checkpoint.

    Names give the blocks per stage; shapes give `hidden_dim`, `mlp_ratio`,
    input channels and `num_classes`. `num_heads` (default `hidden_dim //
    64`), `num_timesteps` (4) and the image size (224) come from `given` or
    the reference ImageNet defaults.

    Args:
        state_dict: mapping of reference names to arrays.
        **given: `MaxFormerBackbone` arguments that override what is inferred.

    Returns:
        `(backbone_config, num_classes, notes)`.

    Raises:
        ValueError: not a Max-Former checkpoint, or `given` contradicts it.

    Example:
    >>> config, num_classes, notes = infer_architecture(read_state_dict(path))
    """
    if not recognises(state_dict):
        raise ValueError(
            "This checkpoint is not a Max-Former one (no `stage1.0.mixer.conv5.weight`); "
            "convert it with its own family's converter."
        )
    return infer_common(state_dict, FAMILY, given)
