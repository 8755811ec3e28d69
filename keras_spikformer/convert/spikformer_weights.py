"""Reference (ZK-Zhou/spikformer, PyTorch) tensor names for the Spikformer family."""

import re

from keras_spikformer.convert.reference_weights import module_variables

FAMILY = "spikformer"

# Reference parameters that exist but take no part in the forward pass.
_UNUSED = re.compile(
    r"^(block\.\d+\.norm[12]\.(weight|bias)|pos_embed|norm\.(weight|bias))$"
)
# Batch-norm bookkeeping that Keras does not keep.
_IGNORED = re.compile(r"\.num_batches_tracked$")
# ImageNet/DVS references name their 1x1 convolutions `*_conv`, CIFAR `*_linear`.
_CONV_SPELLING = re.compile(r"\.(attn\.(?:q|k|v|proj)|mlp\.(?:fc1|fc2))_conv\.")
_STAGE_SUFFIX = ("", "1", "2", "3")


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
    out = module_variables(reference_module_map(model))
    return out


def canonical_name(name):
    """The `_linear` spelling of a reference parameter name."""
    return _CONV_SPELLING.sub(lambda m: f".{m.group(1)}_linear.", name)




def recognises(state_dict):
    """True for the tensor names of a reference Spikformer (any flavour)."""
    required = ("patch_embed.proj_conv.weight", "patch_embed.proj_conv3.weight",
                "patch_embed.rpe_conv.weight", "head.weight")  # fmt: skip
    if not all(k in state_dict for k in required):
        return False
    names = {canonical_name(k) for k in state_dict}
    # SDT V1 shares the stem names but adds talking heads and shortcut neurons.
    return "block.0.attn.q_linear.weight" in names and not any(
        ".talking_heads." in k for k in state_dict
    )


def is_ignored(name):
    """Reference tensors that take no part in the forward pass, and BN counters."""
    return bool(_IGNORED.search(name) or _UNUSED.match(name))


def infer_architecture(state_dict, **given):
    """`(backbone_config, num_classes, notes)` from a reference state dict.

    See `keras_spikformer.convert.spikformer_architecture.infer_architecture`.
    """
    from keras_spikformer.convert.spikformer_architecture import (
        infer_architecture as infer,
    )

    config, notes = infer(state_dict, **given)
    num_classes = config.pop("num_classes")
    return config, num_classes, notes
