"""Which reference family a model or a state dict belongs to.

Each family has a module `keras_spikformer.convert.<family>_weights` with
`FAMILY`, `recognises(state_dict)`, `reference_variable_map(model)`,
`is_ignored(name)`, `infer_architecture(state_dict, **given)` and optionally
`to_keras_layout(name, array, target_shape)` and
`check_state_dict(model, state_dict, strict)` (extra checks before loading).
"""

import importlib

# Backbone class name -> (converter module, classifier class path).
FAMILIES = {
    # Before Spikformer: SDT V1 shares its ImageNet tensor names (see recognises).
    "SpikeDrivenTransformerBackbone": (
        "keras_spikformer.convert.spike_driven_transformer_weights",
        "keras_spikformer.models.spike_driven_transformer:SpikeDrivenTransformer",
    ),
    "SpikformerBackbone": (
        "keras_spikformer.convert.spikformer_weights",
        "keras_spikformer.models.spikformer:Spikformer",
    ),
    "QKFormerBackbone": (
        "keras_spikformer.convert.qkformer_weights",
        "keras_spikformer.models.qkformer:QKFormer",
    ),
    "MaxFormerBackbone": (
        "keras_spikformer.convert.maxformer_weights",
        "keras_spikformer.models.maxformer:MaxFormer",
    ),
    "MSQKFormerBackbone": (
        "keras_spikformer.convert.ms_qkformer_weights",
        "keras_spikformer.models.maxformer:MSQKFormer",
    ),
    "MetaSpikeFormerBackbone": (
        "keras_spikformer.convert.meta_spikeformer_weights",
        "keras_spikformer.models.meta_spikeformer:MetaSpikeFormer",
    ),
    "ESpikeFormerBaseBackbone": (
        "keras_spikformer.convert.e_spikeformer_weights",
        "keras_spikformer.models.e_spikeformer:ESpikeFormer",
    ),
    "ESpikeFormerLargeBackbone": (
        "keras_spikformer.convert.e_spikeformer_large_weights",
        "keras_spikformer.models.e_spikeformer:ESpikeFormerLarge",
    ),
}


def _module(path):
    return importlib.import_module(path)


def all_families():
    """`[(module, classifier class)]` of every registered family."""
    out = []
    for module_path, task_path in FAMILIES.values():
        task_module, task_name = task_path.split(":")
        out.append((_module(module_path), getattr(_module(task_module), task_name)))
    return out


def family_of_model(model):
    """The converter module of `model` (a classifier or a backbone)."""
    backbone = getattr(model, "backbone", model)
    entry = FAMILIES.get(type(backbone).__name__)
    if entry is None:
        raise ValueError(
            f"{type(model).__name__} has no reference converter; supported backbones: "
            f"{sorted(FAMILIES)}."
        )
    return _module(entry[0])


def family_of_state_dict(state_dict):
    """`(module, classifier class)` of the family whose tensor names these are.

    Raises:
        ValueError: when no family recognises the names (the first few shown).
    """
    for module, task_cls in all_families():
        if module.recognises(state_dict):
            return module, task_cls
    sample = sorted(state_dict)[:6]
    families = ", ".join(m.FAMILY for m, _ in all_families())
    raise ValueError(
        f"No supported family recognises this checkpoint (its first tensors: {sample}). "
        f"Supported reference families: {families}."
    )


def family_by_name(name):
    """`(module, classifier class)` of the family called `name` (its `FAMILY`).

    Raises:
        ValueError: an unknown name (the known ones listed).
    """
    for module, task_cls in all_families():
        if module.FAMILY == name:
            return module, task_cls
    names = ", ".join(m.FAMILY for m, _ in all_families())
    raise ValueError(f"Unknown family {name!r} (--family); known families: {names}.")
