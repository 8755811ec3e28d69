"""Reference (bic-L/MaxFormer `imagenet/ms_qkformer.py`) names for the MS-QKFormer family.

`patch_embed1.{proj,proj1,proj2}_{conv,bn}` (neurons `proj_lif1`, `proj_lif2`)
and `rpe_{conv,bn}`; `patch_embed{2,3}.{init_lif, proj3_*, proj4_*,
proj_res_*}`; `stage{1,2}.j.attn.{proj_lif (input), q, k, attn_lif, proj}_*`;
stage 3, MLPs and head as Max-Former.

Every tensor has the shape of QKFormer's ImageNet model, so shapes cannot
tell the two apart: a QKFormer file is recognised by its names
(`stage1.0.tssa.*`, `patch_embed1.proj1_conv`) and only read as MS-QKFormer
when the user names this family (`from_family`, CLI `--family ms_qkformer`).
"""

from keras_spikformer.convert import maxformer_weights
from keras_spikformer.convert.maxformer_weights import (  # noqa: F401 (family API)
    flavour_of,
    is_ignored,
    to_keras_layout,
)
from keras_spikformer.convert.reference_weights import module_variables

FAMILY = "ms_qkformer"
# QKFormer ImageNet names -> MS-QKFormer names (same tensors, same shapes).
_FROM_QKFORMER = (
    ("patch_embed1.proj1_", "patch_embed1.proj_conv1", "conv"),
    ("patch_embed1.proj1_", "patch_embed1.proj_bn1", "bn"),
    ("patch_embed1.proj2_", "patch_embed1.proj_conv2", "conv"),
    ("patch_embed1.proj2_", "patch_embed1.proj_bn2", "bn"),
    ("patch_embed1.proj_res_", "patch_embed1.rpe_conv", "conv"),
    ("patch_embed1.proj_res_", "patch_embed1.rpe_bn", "bn"),
)


def recognises(state_dict):
    """True for MS-QKFormer names: `stage1.0.attn.q_conv` with the ImageNet
    `patch_embed1.rpe_conv` or the CIFAR `Embed_1Max` (`patch_embed2.max_embed1`)."""
    return (
        "stage1.0.attn.q_conv.weight" in state_dict
        and "head.weight" in state_dict
        and (
            "patch_embed1.rpe_conv.weight" in state_dict
            or "patch_embed2.max_embed1.embed_conv.weight" in state_dict
        )
    )


def _rename_qkformer(name):
    for old_prefix, new_module, kind in _FROM_QKFORMER:
        if name.startswith(old_prefix + kind + "."):
            return new_module + name[len(old_prefix + kind) :]
    if name.startswith(("stage1.", "stage2.")):
        return name.replace(".tssa.", ".attn.", 1)
    return name


def from_family(family, state_dict):
    """Reads another family's file as MS-QKFormer, when the user says so.

    Only QKFormer ImageNet files qualify (same tensors under other names); the
    result is a different network from the one that file was trained as, so
    this runs only on an explicit `--family ms_qkformer`.

    Args:
        family: the `FAMILY` the names were recognised as.
        state_dict: its tensors.

    Returns:
        The state dict under MS-QKFormer names.

    Raises:
        ValueError: any other family, or a QKFormer file of another flavour.

    Example:
    >>> state_dict = from_family("qkformer", read_state_dict("qkformer.pth.tar"))
    """
    if family != "qkformer" or "patch_embed1.proj2_conv.weight" not in state_dict:
        raise ValueError(
            f"A {family} checkpoint cannot be read as {FAMILY}: only QKFormer ImageNet "
            "files have its tensors (under other names)."
        )
    return {_rename_qkformer(name): value for name, value in state_dict.items()}


def reference_module_map(model):
    """Maps reference module names to Keras layers (state-dict order).

    Args:
        model: a `MSQKFormer` or `MSQKFormerBackbone`.

    Returns:
        dict of reference module name -> layer.

    Example:
    >>> lif = reference_module_map(model)["patch_embed2.init_lif"]
    """
    backbone = getattr(model, "backbone", model)
    modules = {}
    unit = maxformer_weights._unit
    stem = backbone.get_layer("patch_embed1")
    if backbone.flavour == "cifar":
        maxformer_weights.add_cifar_stem(modules, stem)
    else:
        unit(modules, "patch_embed1.", stem.conv0, "proj_conv", "proj_bn")
        unit(
            modules, "patch_embed1.", stem.conv1, "proj_conv1", "proj_bn1", "proj_lif1"
        )
        unit(
            modules, "patch_embed1.", stem.conv2, "proj_conv2", "proj_bn2", "proj_lif2"
        )
        unit(modules, "patch_embed1.", stem.shortcut, "rpe_conv", "rpe_bn")
    for s in (2, 3):
        down = backbone.get_layer(f"patch_embed{s}")
        prefix = f"patch_embed{s}."
        if backbone.flavour == "cifar":  # `Embed_1Max`
            for name, layer in zip(
                ("embed1.", "max_embed1.", "embed2."),
                (down.conv0, down.conv1, down.shortcut),
                strict=True,
            ):
                lif = "embed_lif" if layer.fire_input else None
                unit(modules, prefix + name, layer, "embed_conv", "embed_bn", lif)
            continue
        unit(modules, prefix, down.conv0, "proj3_conv", "proj3_bn", "init_lif")
        unit(modules, prefix, down.conv1, "proj4_conv", "proj4_bn", "proj3_lif")
        unit(modules, prefix, down.shortcut, "proj_res_conv", "proj_res_bn")
    return maxformer_weights.finish(modules, model, backbone)


def reference_variable_map(model):
    """Maps reference parameter and buffer names to Keras variables.

    Example:
    >>> reference_variable_map(model)["patch_embed1.rpe_conv.weight"]
    """
    return module_variables(reference_module_map(model))


def prepare_state_dict(model, state_dict):
    """Hook of `load_reference_weights`: renames nothing for current names."""
    return maxformer_weights.positional_names(model, state_dict)


def infer_architecture(state_dict, **given):
    """Backbone arguments and class count of an MS-QKFormer checkpoint.

    As `maxformer_weights.infer_architecture` (heads `hidden_dim // 64` in
    every stage unless given).

    Example:
    >>> config, num_classes, notes = infer_architecture(read_state_dict(path))
    """
    if not recognises(state_dict):
        raise ValueError(
            "This checkpoint is not an MS-QKFormer one (no `stage1.0.attn.q_conv.weight` "
            "/ `patch_embed1.rpe_conv.weight`); a QKFormer file is only read as "
            "MS-QKFormer with `--family ms_qkformer`."
        )
    return maxformer_weights.infer_common(state_dict, FAMILY, given)
