"""Reference (BICLab/Spike-Driven-Transformer-V3 `Model_Large`) names for E-SpikeFormer Large.

Both key styles of the conv blocks are accepted: `ConvBlockX.0.conv1.0.0.weight`
(spikingjelly's sequence wrapper as a Sequential) and
`ConvBlockX.0.conv1.0.module.0.weight` (a wrapper keeping a `module`).
"""

import re

from keras_spikformer.convert.e_spikeformer_weights import (
    apply_given,
    block_depths,
    is_ignored,
    reference_module_map,
    reference_variable_map,
    to_keras_layout,
)
from keras_spikformer.convert.meta_spikeformer_weights import check_state_dict

FAMILY = "e_spikeformer (Spike-driven Transformer V3, Large)"

_MODULE = re.compile(r"^(ConvBlock\d_\d\.0\.conv\d\.0)\.module\.")
_LARGE_SIGNATURE = (
    "downsample1_1.encode_conv.weight",
    "downsample3.encode_conv.weight",
    "ConvBlock1_1.0.conv1.0.0.weight",
)
DEFAULTS = {"num_heads": 8, "image_size": 224, "spike_levels": 4, "num_timesteps": 1}

__all__ = [
    "canonical_name",
    "check_state_dict",
    "is_ignored",
    "reference_module_map",
    "reference_variable_map",
    "to_keras_layout",
]


def canonical_name(name):
    """`ConvBlockX.0.convI.0.module.J...` -> `ConvBlockX.0.convI.0.J...`."""
    return _MODULE.sub(r"\1.", name)


def recognises(state_dict):
    """True when the tensor names are those of a reference E-SpikeFormer Large."""
    names = {canonical_name(k) for k in state_dict}
    return all(n in names for n in _LARGE_SIGNATURE) and (
        "downsample4.encode_conv.weight" not in names
    )


def infer_architecture(state_dict, **given):
    """Works out `ESpikeFormerLargeBackbone` arguments from a reference state dict.

    Shapes give the widths (the 171M stage-1 width, 196 or 192, with its
    stem of 98 or 96 channels), the blocks, the MLP ratio, the rep branch and its
    BN width, the classes and whether `head_kd` exists. `spike_levels` (D: 4
    for "1x4" files, 8 for "1x8"), heads, time steps and the image size come
    from `given`, else 4, 8, 1 and 224x224.

    Returns:
        `(config, num_classes, notes)`; `config` includes the classifier's
        `distillation_head`.

    Example:
    >>> config, classes, notes = infer_architecture(sd, spike_levels=8)
    """
    sd = {canonical_name(k): v for k, v in state_dict.items()}
    if not recognises(sd):
        raise ValueError(
            f"This checkpoint is not a reference E-SpikeFormer Large: it lacks some of "
            f"{list(_LARGE_SIGNATURE)} (its first keys are {sorted(sd)[:6]})."
        )
    stem = int(sd["downsample1_1.encode_conv.weight"].shape[0])
    widths = [int(sd[f"{n}.encode_conv.weight"].shape[0])
              for n in ("downsample1_2", "downsample2", "downsample3")]  # fmt: skip
    if widths[0] // 2 != stem:
        raise ValueError(
            f"The stem has {stem} channels but downsample1_2 {widths[0]}; E-SpikeFormer "
            "Large needs stem = widths[0] // 2 (98 for the 171M width 196, 96 for 192)."
        )
    (depth,) = block_depths(sd, (3,))
    config = {"widths": widths, "num_layers": depth}
    if depth:
        config["mlp_ratio"] = sd["block3.0.mlp.fc1_conv.weight"].shape[0] / widths[2]
    rep = sd.get("block3.0.rep_conv.conv1.1.weight")
    config["rep_branch_width"] = None if rep is None else int(rep.shape[0])
    notes = {key: "shapes" for key in config}
    channels = int(sd["downsample1_1.encode_conv.weight"].shape[1])
    size = DEFAULTS["image_size"]
    fallback = {
        "num_heads": DEFAULTS["num_heads"],
        "spike_levels": DEFAULTS["spike_levels"],
        "num_timesteps": DEFAULTS["num_timesteps"],
        "image_shape": [size, size, channels],
    }
    apply_given(config, notes, fallback, given)
    config["distillation_head"] = "head_kd.weight" in sd
    notes["distillation_head"] = "shapes"
    notes["num_classes"] = "shapes"
    return config, int(sd["head.weight"].shape[0]), notes
