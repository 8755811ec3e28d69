"""Which reference model matches a zoo preset: one builder per family.

Maps a preset's backbone config and task to the authors' PyTorch code (the
model file in their checkout, the class, its constructor arguments and the
input shape), without importing torch, so it can be tested anywhere and used by
`collect.py` to name a record's family. Standard library only.

Families and their reference repositories:

| family | backbone | reference | timm |
|---|---|---|---|
| spikformer | SpikformerBackbone | ZK-Zhou/spikformer | 0.5.4 |
| sdt | SpikeDrivenTransformerBackbone | BICLab/Spike-Driven-Transformer | 0.6.12 |
| qkformer | QKFormerBackbone | zhouchenlin2096/QKFormer | 0.6.12 |
| meta_spikeformer | MetaSpikeFormerBackbone | BICLab/Spike-Driven-Transformer-V2 | 0.6.12 |

Example:
    >>> config, task, meta = read_preset("sdt_2_512_cifar10")
    >>> reference_model(config, task).source
    'model/spikeformer.py'
"""

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

ZOO = Path(__file__).resolve().parent.parent / "zoo"
# backbone class -> (family, repository, timm version its code was written for)
FAMILIES = {
    "SpikformerBackbone": ("spikformer", "ZK-Zhou/spikformer", "0.5.4"),
    "SpikeDrivenTransformerBackbone": (
        "sdt",
        "BICLab/Spike-Driven-Transformer",
        "0.6.12",
    ),
    "QKFormerBackbone": ("qkformer", "zhouchenlin2096/QKFormer", "0.6.12"),
    "MetaSpikeFormerBackbone": (
        "meta_spikeformer",
        "BICLab/Spike-Driven-Transformer-V2",
        "0.6.12",
    ),
}
FAMILY_NAMES = tuple(family for family, _, _ in FAMILIES.values())
# Neuron options every reference hard-codes; a preset that changes one has no
# reference counterpart.
REFERENCE_NEURON = {
    "tau": 2.0,
    "v_threshold": 1.0,
    "attention_v_threshold": 0.5,
    "v_reset": 0.0,
    "decay_input": True,
    "detach_reset": True,
    "surrogate": "sigmoid",
}


class Reference(NamedTuple):
    """How to build the reference model of a preset.

    Attributes:
        family: one of `FAMILY_NAMES`.
        repository: "owner/name" on GitHub.
        timm: the timm version the reference code was written for.
        source: the model file, relative to the checkout.
        factory: the class in `source` to instantiate.
        kwargs: its constructor arguments.
        attributes: attributes set on the built model (Meta-SpikeFormer's `T`).
        input_shape: one example's shape, channels first (time first for
            event frames).
        unused: regular expressions of the parameter names the reference
            builds but never uses and our model leaves out (Spikformer's
            LayerNorms); they are not counted against ours.
    """

    family: str
    repository: str
    timm: str
    source: str
    factory: str
    kwargs: dict
    attributes: dict
    input_shape: tuple
    unused: tuple = ()


def preset_path(preset):
    """The directory of a zoo name or preset directory, or a clear exit."""
    path = Path(preset) if os.path.isdir(preset) else ZOO / preset
    if not (path / "config.json").is_file():
        raise SystemExit(
            f"No preset {preset!r}: {path / 'config.json'} does not exist. Pass a "
            "zoo name (a folder of zoo/) or a preset directory."
        )
    return path


def family_of(preset):
    """The family of a preset ("sdt", ...), or "" when it has no reference here."""
    try:
        path = preset_path(preset)
    except SystemExit:
        return ""
    name = json.loads((path / "config.json").read_text()).get("class_name")
    return FAMILIES.get(name, ("",))[0]


def read_preset(preset):
    """`(backbone config, task config, metadata)` of a preset with a reference.

    Exits naming the problem when the preset does not exist, belongs to a
    family without a reference harness or has no classifier.
    """
    path = preset_path(preset)
    config = json.loads((path / "config.json").read_text())
    if config.get("class_name") not in FAMILIES:
        raise SystemExit(
            f"Preset {preset!r} is a {config.get('class_name')}; reference models "
            f"exist for {', '.join(FAMILIES)} ({', '.join(FAMILY_NAMES)} presets)."
        )
    task = path / "task.json"
    task = json.loads(task.read_text())["config"] if task.is_file() else {}
    if not task.get("num_classes"):
        raise SystemExit(f"Preset {preset!r} has no classifier (task.json).")
    meta = path / "metadata.json"
    meta = json.loads(meta.read_text()) if meta.is_file() else {}
    return config, task, meta


def check_parameter_count(preset, ours, theirs):
    """Exits unless the reference has as many trainable parameters as ours.

    Args:
        preset: the preset's name, for the message.
        ours: `trainable_params` of the preset's metadata.json (None if absent).
        theirs: trainable parameters of the built reference model.
    """
    if ours is None:
        raise SystemExit(
            f"Preset {preset!r} has no trainable_params in metadata.json, so the "
            "reference cannot be checked against it; save the preset with "
            "`save_to_preset`, which records it."
        )
    if ours != theirs:
        raise SystemExit(
            f"The reference model built for {preset!r} has {theirs:,} trainable "
            f"parameters, ours {ours:,} (metadata.json): it is not the same "
            "architecture, so its timings would not compare. Check the reference "
            "checkout's version against the family's spec (shared/successors)."
        )


def counted_parameters(named_sizes, unused=()):
    """`(counted, left out)`: trainable parameters compared with ours.

    Args:
        named_sizes: `(name, number of elements)` of the reference model's
            trainable parameters (`model.named_parameters()`).
        unused: `Reference.unused`; names matching one (from the start) are
            left out.
    """
    counted = left_out = 0
    for name, size in named_sizes:
        if any(re.match(pattern, name) for pattern in unused):
            left_out += size
        else:
            counted += size
    return counted, left_out


def reference_model(config, task):
    """The `Reference` of a backbone config (`config.json`) and task config."""
    name = config["class_name"]
    family, repository, timm = FAMILIES[name]
    args = config["config"]
    for key, value in REFERENCE_NEURON.items():
        if args.get(key, value) != value:
            raise SystemExit(
                f"The preset's {key}={args.get(key)!r} has no reference "
                f"counterpart (the reference hard-codes {value!r})."
            )
    source, factory, kwargs, attributes, shape = _BUILDERS[family](args, task)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unused = ()
    if family == "spikformer":  # SPEC.md: counts exclude the unused norms
        unused = (r"block\.\d+\.norm[12]\.",)
        if source.startswith("cifar10dvs"):
            unused += (r"pos_embed$", r"norm\.")
    return Reference(
        family, repository, timm, source, factory, kwargs, attributes, shape, unused
    )


def _image(args):
    height, width, channels = args["image_shape"]
    return height, width, channels, (channels, height, width)


def _common(args, task):
    """The constructor arguments Spikformer, SDT and QKFormer share."""
    height, width, channels = args["image_shape"]
    return {
        "img_size_h": height,
        "img_size_w": width,
        "in_channels": channels,
        "num_classes": task["num_classes"],
        "embed_dims": args["hidden_dim"],
        "num_heads": args["num_heads"],
        "mlp_ratios": _ratio(args["mlp_ratio"]),
        "sr_ratios": 1,
    }


def _ratio(value):
    """An MLP ratio as the reference configs give it (4, not 4.0: some
    references size layers with `dim * mlp_ratio`)."""
    return int(value) if float(value).is_integer() else value


def spikformer(args, task):
    """ZK-Zhou/spikformer: cifar10 (biased q/k/v, T argument), imagenet
    (bias-free, T fixed at 4) or cifar10dvs (event frames, scale 0.25)."""
    height, width, channels, shape = _image(args)
    kwargs = {
        **_common(args, task),
        "patch_size": args["patch_size"],
        "depths": args["num_layers"],
    }
    scale, bias, steps = (
        args["attention_scale"],
        args["qkv_bias"],
        args["num_timesteps"],
    )
    if args["encoding"] == "frames":
        folder, want = "cifar10dvs", (0.25, False)
        shape = (steps,) + shape
        if (height, width) != (128, 128):
            raise SystemExit(
                "The event-frame reference hard-codes 128x128 frames in its patch "
                f"splitting; the preset has {height}x{width}."
            )
    elif bias:
        folder, want = "cifar10", (0.125, True)
        kwargs["T"] = steps
    else:
        folder, want = "imagenet", (0.125, False)
        if steps != 4:
            raise SystemExit(
                f"The ImageNet reference fixes T=4 in its forward; the preset has "
                f"T={steps}."
            )
    if (scale, bias) != want:
        raise SystemExit(
            f"The preset (attention_scale={scale}, qkv_bias={bias}) matches no "
            f"reference model: {folder}/model.py has scale {want[0]}, "
            f"qkv bias {want[1]}."
        )
    return f"{folder}/model.py", "Spikformer", kwargs, {}, shape


def sdt(args, task):
    """BICLab/Spike-Driven-Transformer `model/spikeformer.py`, as its train.py
    calls it (`create_model("sdt", ...)`: bias-free q/k/v, LIF neurons)."""
    shape = _image(args)[3]
    if task.get("per_step_logits"):
        raise SystemExit(
            "per_step_logits=True (the reference's TET mode) is not timed by this "
            "harness; use a preset with per-time-step logits off."
        )
    if args["encoding"] == "frames":
        shape = (args["num_timesteps"],) + shape
    kwargs = {
        **_common(args, task),
        "depths": args["num_layers"],
        "T": args["num_timesteps"],
        "pooling_stat": args["pooling"],
        "qkv_bias": False,
        "spike_mode": "lif",
        "dvs_mode": bool(args["erode"]),
        "TET": False,
    }
    return "model/spikeformer.py", "SpikeDrivenTransformer", kwargs, {}, shape


def qkformer(args, task):
    """zhouchenlin2096/QKFormer `cifar10/model.py` (stages of 1, 1 and
    depth - 2 blocks, 8 heads forced)."""
    shape = _image(args)[3]
    stages = list(args["stage_depths"])
    if args["flavour"] != "cifar" or args["encoding"] != "direct":
        raise SystemExit(
            f"The QKFormer harness runs the CIFAR reference (cifar10/model.py); the "
            f"preset is flavour={args['flavour']!r}, encoding={args['encoding']!r}."
        )
    if stages[:2] != [1, 1] or len(stages) != 3 or args["num_heads"] != 8:
        raise SystemExit(
            f"QKFormer's cifar10/model.py builds stages [1, 1, depth-2] with 8 "
            f"heads; the preset has stage_depths={stages}, "
            f"num_heads={args['num_heads']}."
        )
    if not args.get("batch_spanning_projection", True):
        raise SystemExit(
            "batch_spanning_projection=False has no reference counterpart (the "
            "reference's projection batch norm spans time and batch)."
        )
    kwargs = {
        **_common(args, task),
        "patch_size": 4,
        "qkv_bias": False,
        "depths": sum(stages),
        "T": args["num_timesteps"],
    }
    return "cifar10/model.py", "spiking_transformer", kwargs, {}, shape


def meta_spikeformer(args, task):
    """BICLab/Spike-Driven-Transformer-V2 `classification/models.py`
    (`Spiking_vit_MetaFormer`, 6 + 2 transformer blocks, `model.T` set after
    construction as its main_finetune.py does)."""
    height, width, channels, shape = _image(args)
    if list(args["num_layers"]) != [6, 2] or args.get("attention_scale") != 0.125:
        raise SystemExit(
            "classification/models.py hard-codes 6 + 2 transformer blocks and "
            f"attention scale 0.125; the preset has num_layers={args['num_layers']}, "
            f"attention_scale={args.get('attention_scale')}."
        )
    kwargs = {
        "img_size_h": height,
        "img_size_w": width,
        "patch_size": 16,
        "embed_dim": list(args["widths"]),
        "num_heads": args["num_heads"],
        "mlp_ratios": _ratio(args["mlp_ratio"]),
        "in_channels": channels,
        "num_classes": task["num_classes"],
        "qkv_bias": False,
        "depths": 8,
        "sr_ratios": 1,
        "kd": bool(task.get("distillation_head")),
    }
    attributes = {"T": args["num_timesteps"]}
    return (
        "classification/models.py",
        "Spiking_vit_MetaFormer",
        kwargs,
        attributes,
        shape,
    )


_BUILDERS = {
    "spikformer": spikformer,
    "sdt": sdt,
    "qkformer": qkformer,
    "meta_spikeformer": meta_spikeformer,
}
