"""Inferring a Spikformer architecture from the tensor shapes of a reference state dict."""

import re

from keras_spikformer import presets
from keras_spikformer.convert.spikformer_weights import canonical_name

# What shapes cannot tell, per reference family (SPEC.md, "Variants").
FAMILY_DEFAULTS = {
    "cifar": {"patch_size": 4, "image_size": 32, "num_timesteps": 4, "attention_scale": 0.125, "encoding": "direct"},
    "imagenet": {"patch_size": 16, "image_size": 224, "num_timesteps": 4, "attention_scale": 0.125, "encoding": "direct"},
    "dvs": {"patch_size": 16, "image_size": 128, "num_timesteps": 16, "attention_scale": 0.25, "encoding": "frames"},
}  # fmt: skip
_REQUIRED = (
    "patch_embed.proj_conv.weight",
    "patch_embed.proj_conv3.weight",
    "patch_embed.rpe_conv.weight",
    "head.weight",
)
_SHAPE_KEYS = ("hidden_dim", "num_layers", "mlp_ratio", "num_classes", "qkv_bias")


class ArchitectureError(ValueError):
    """The state dict is not a Spikformer, or does not fit the requested one."""


def detect_family(state_dict):
    """`"cifar"` (Linear layers), `"imagenet"` (Conv1d attention, Conv2d MLP) or `"dvs"` (Conv1d MLP)."""
    fc1 = state_dict.get("block.0.mlp.fc1_conv.weight")
    if "block.0.attn.q_linear.weight" in state_dict:
        return "cifar"
    if "pos_embed" in state_dict or (fc1 is not None and fc1.ndim == 3):
        return "dvs"
    return "imagenet"


def infer_architecture(state_dict, **given):
    """Works out `Spikformer` arguments from a reference state dict.

    Shapes give depth, width, MLP ratio, classes, q/k/v bias and input
    channels. The rest (heads, time steps, image size, patch size, attention
    scale) comes from `given`, else from the zoo preset with the same shapes,
    else from the family's defaults in SPEC.md.

    Args:
        state_dict: reference parameter names -> arrays (prefix already removed).
        **given: `Spikformer` arguments to use as they are (e.g. `num_heads=4`,
            `num_timesteps=2`, `image_shape=(64, 64, 3)`).

    Returns:
        `(config, notes)`: the constructor arguments and a dict saying where
        each one came from (`"shapes"`, `"given"`, `"preset <name>"`, `"default"`).

    Example:
    >>> config, notes = infer_architecture(read_state_dict("ckpt.pth.tar"), num_heads=8)
    """
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        sample = sorted(state_dict)[:8]
        raise ArchitectureError(
            f"This checkpoint is not a reference Spikformer: it lacks {missing} "
            f"(its first keys are {sample}). Convert checkpoints of ZK-Zhou/spikformer "
            "models, or load other architectures with their own tools."
        )
    sd = {canonical_name(k): v for k, v in state_dict.items()}
    family = detect_family(state_dict)
    width = int(sd["patch_embed.proj_conv3.weight"].shape[0])
    blocks = sorted(
        {int(m.group(1)) for k in sd if (m := re.match(r"block\.(\d+)\.", k))}
    )
    if blocks != list(range(len(blocks))) or not blocks:
        raise ArchitectureError(
            f"Blocks in the checkpoint are numbered {blocks}; expected 0..L-1."
        )
    found = {
        "hidden_dim": width,
        "num_layers": len(blocks),
        "mlp_ratio": float(sd["block.0.mlp.fc1_linear.weight"].shape[0] / width),
        "num_classes": int(sd["head.weight"].shape[0]),
        "qkv_bias": "block.0.attn.q_linear.bias" in sd,
        "channels": int(sd["patch_embed.proj_conv.weight"].shape[1]),
    }
    notes = {key: "shapes" for key in found}
    config = {k: found[k] for k in _SHAPE_KEYS}
    preset = _matching_preset(family, found)
    source = presets.read_config(presets.resolve(preset)) if preset else {}
    defaults = FAMILY_DEFAULTS[family]
    fallback = {
        "num_heads": source.get("num_heads", _default_heads(width)),
        "num_timesteps": source.get("num_timesteps", defaults["num_timesteps"]),
        "patch_size": source.get("patch_size", defaults["patch_size"]),
        "attention_scale": source.get("attention_scale", defaults["attention_scale"]),
        "encoding": source.get("encoding", defaults["encoding"]),
    }
    size = source.get("image_shape", [defaults["image_size"]] * 2)[:2]
    fallback["image_shape"] = [*size, found["channels"]]
    for key, value in fallback.items():
        if given.get(key) is not None:
            config[key], notes[key] = given[key], "given"
        else:
            config[key] = value
            notes[key] = f"preset {preset}" if key in source else "default"
    for key, value in given.items():
        if key not in config and value is not None:
            config[key], notes[key] = value, "given"
    notes["family"] = family
    return config, notes


def _default_heads(width):
    """Head size 64 where it divides, else 32, else one head."""
    for head_dim in (64, 32):
        if width % head_dim == 0:
            return width // head_dim
    return 1


def _matching_preset(family, found):
    """The zoo preset of this family whose shapes all agree, if exactly one."""
    matches = []
    for name, meta in presets.catalogue().items():
        if meta.get("family") != family:
            continue
        cfg = presets.read_config(presets.resolve(name))
        same = all(cfg.get(k) == found[k] for k in _SHAPE_KEYS)
        if same and cfg["image_shape"][2] == found["channels"]:
            matches.append(name)
    return matches[0] if len(matches) == 1 else None
