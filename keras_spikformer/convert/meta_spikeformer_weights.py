"""Reference (BICLab/Spike-Driven-Transformer-V2) names and shapes for Meta-SpikeFormer."""

import re

import keras
import numpy as np

from keras_spikformer.convert import reference_weights

FAMILY = "meta_spikeformer"

_BN_KEYS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
_CONV_BLOCKS = {
    "ConvBlock1_1.0": "conv_block1_1",
    "ConvBlock1_2.0": "conv_block1_2",
    "ConvBlock2_1.0": "conv_block2_1",
    "ConvBlock2_2.0": "conv_block2_2",
}
_DOWNSAMPLING = ("downsample1_1", "downsample1_2", "downsample2", "downsample3",
                 "downsample4")  # fmt: skip
_IGNORED = re.compile(r"\.num_batches_tracked$")
# The depthwise kernels: separable convs' `dwconv`, RepConv's `body.2.0`.
_DEPTHWISE = re.compile(r"(\.dwconv|\.body\.2\.0)\.weight$")
# Tensors every reference Meta-SpikeFormer has (and no other family).
_SIGNATURE = (
    "downsample1_1.encode_conv.weight",
    "ConvBlock1_1.0.Conv.dwconv.weight",
    "block3.0.attn.q_conv.0.body.1.bn.weight",
)
# What the shapes cannot tell, with the values of the released checkpoints.
DEFAULTS = {"num_heads": 8, "num_timesteps": 4, "image_size": 224,
            "attention_scale": 0.125}  # fmt: skip


def recognises(state_dict):
    """True when the tensor names are those of a reference Meta-SpikeFormer."""
    return all(name in state_dict for name in _SIGNATURE)


def is_ignored(name):
    """BN counters are in every checkpoint but Keras keeps none."""
    return bool(_IGNORED.search(name))


def _parts(model):
    backbone = getattr(model, "backbone", model)
    return backbone, (None if backbone is model else model)


def _rep_conv(prefix, rep, outer_bn, modules):
    modules[f"{prefix}.0.body.0"] = rep.conv1
    modules[f"{prefix}.0.body.1.bn"] = rep.bn_pad.bn
    modules[f"{prefix}.0.body.2.0"] = rep.depthwise
    modules[f"{prefix}.0.body.2.1"] = rep.conv2
    modules[f"{prefix}.0.body.2.2"] = rep.bn
    modules[f"{prefix}.1"] = outer_bn


def reference_module_map(model):
    """Maps reference module names to the Keras layers that play their part.

    Covers convolutions, linears, batch norms and every LIF neuron
    (`downsample2.encode_lif`, `block3.0.attn.attn_lif`, `lif`, ...).

    Args:
        model: a `MetaSpikeFormer` or `MetaSpikeFormerBackbone`.

    Returns:
        dict of reference module name -> Keras layer.

    Example:
    >>> lif = reference_module_map(model)["block3.0.attn.q_lif"]
    """
    backbone, task = _parts(model)
    modules = {}
    for name in _DOWNSAMPLING:
        layer = backbone.get_layer(name)
        modules[f"{name}.encode_conv"] = layer.conv
        modules[f"{name}.encode_bn"] = layer.bn
        if not layer.first_layer:
            modules[f"{name}.encode_lif"] = layer.lif
    for ref, ours in _CONV_BLOCKS.items():
        block = backbone.get_layer(ours)
        for attr in ("lif1", "conv1", "bn1", "lif2", "conv2", "bn2"):
            modules[f"{ref}.{attr}"] = getattr(block, attr)
        sep = block.sep_conv
        for attr in ("lif1", "pwconv1", "bn1", "lif2", "dwconv", "pwconv2", "bn2"):
            modules[f"{ref}.Conv.{attr}"] = getattr(sep, attr)
    for stage, depth in ((3, backbone.num_layers[0]), (4, backbone.num_layers[1])):
        for j in range(depth):
            block = backbone.get_layer(f"block{stage}_{j}")
            prefix, attn, mlp = f"block{stage}.{j}", block.attn, block.mlp
            for name in ("q", "k", "v", "proj"):
                rep, bn = getattr(attn, f"{name}_conv"), getattr(attn, f"{name}_bn")
                _rep_conv(f"{prefix}.attn.{name}_conv", rep, bn, modules)
            for name in ("head_lif", "q_lif", "k_lif", "v_lif", "attn_lif"):
                modules[f"{prefix}.attn.{name}"] = getattr(attn, name)
            for name in ("fc1", "fc2"):
                modules[f"{prefix}.mlp.{name}_conv"] = getattr(mlp, name)
                modules[f"{prefix}.mlp.{name}_bn"] = getattr(mlp, f"{name}_bn")
                modules[f"{prefix}.mlp.{name}_lif"] = getattr(mlp, f"{name}_lif")
    if task is not None:
        modules["lif"] = task.head_lif
        modules["head"] = task.head
        if task.head_kd is not None:
            modules["head_kd"] = task.head_kd
    return modules


def reference_variable_map(model):
    """Maps reference parameter and buffer names to Keras variables.

    Example:
    >>> reference_variable_map(model)["head.weight"]  # the head's kernel
    """
    out = {}
    for module, layer in reference_module_map(model).items():
        if isinstance(layer, keras.layers.BatchNormalization):
            for ref, attr in _BN_KEYS.items():
                out[f"{module}.{ref}"] = getattr(layer, attr)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            out[f"{module}.weight"] = layer.kernel
        elif hasattr(layer, "kernel"):
            out[f"{module}.weight"] = layer.kernel
            if getattr(layer, "use_bias", False):
                out[f"{module}.bias"] = layer.bias
    return out


def to_keras_layout(name, array, target_shape):
    """Transposes a reference tensor into the Keras layout of `target_shape`.

    Depthwise `[C, 1, kh, kw]` -> `[kh, kw, C, 1]`; conv `[out, in, kh, kw]`
    -> `[kh, kw, in, out]`; 1x1 conv / Conv1d / linear -> `[in, out]`.
    """
    array = np.asarray(array)
    target_shape = tuple(target_shape)
    if array.ndim == 4 and len(target_shape) == 4:
        if (
            array.shape[1] == 1
            and target_shape[3] == 1
            and target_shape[2] == array.shape[0]
        ):
            return array.transpose(2, 3, 0, 1)
        return array.transpose(2, 3, 1, 0)
    if len(target_shape) == 2 and array.ndim >= 2:
        if all(d == 1 for d in array.shape[2:]):
            return array.reshape(array.shape[:2]).T
    return array


def reference_shape(name, array_shape, target_shape):
    """The shape the model needs, in the checkpoint's layout: depthwise
    `[kh, kw, C, 1]` -> `[C, 1, kh, kw]`, the rest as for every family.

    Example:
    >>> reference_shape("ConvBlock1_1.0.Conv.dwconv.weight", (8, 2, 7, 7), (7, 7, 8, 1))
    (8, 1, 7, 7)
    """
    t = tuple(target_shape)
    if _DEPTHWISE.search(name) and len(t) == 4:
        return (t[2], t[3], t[0], t[1])
    return reference_weights.reference_shape(name, array_shape, target_shape)


def infer_architecture(state_dict, **given):
    """Works out `MetaSpikeFormerBackbone` arguments from a reference state dict.

    Shapes give the widths, the transformer blocks per stage, the MLP ratio,
    the classes, the input channels and whether `head_kd` exists. Heads, time
    steps and image size come from `given`, else the released models' values
    (8 heads, T=4, 224x224).

    Args:
        state_dict: reference names -> arrays (prefix removed).
        **given: backbone arguments to use as they are (`num_heads=4`,
            `num_timesteps=1`, `image_shape=(64, 64, 3)`, ...).

    Returns:
        `(config, num_classes, notes)`: backbone arguments plus the
        classifier's `distillation_head` (whether `head_kd` is present);
        `notes` maps each argument to where it came from (`"shapes"`,
        `"given"`, `"default"`).

    Example:
    >>> config, classes, notes = infer_architecture(sd, num_timesteps=4)
    """
    if not recognises(state_dict):
        sample = sorted(state_dict)[:8]
        raise ValueError(
            f"This checkpoint is not a reference Meta-SpikeFormer: it lacks some of "
            f"{list(_SIGNATURE)} (its first keys are {sample}). Convert it with its "
            "own family's converter."
        )
    e0 = int(state_dict["downsample1_2.encode_conv.weight"].shape[0])
    e1 = int(state_dict["downsample2.encode_conv.weight"].shape[0])
    e2 = int(state_dict["downsample3.encode_conv.weight"].shape[0])
    e3 = int(state_dict["downsample4.encode_conv.weight"].shape[0])
    depths = []
    for stage in (3, 4):
        found = {int(m.group(1)) for k in state_dict
                 if (m := re.match(rf"block{stage}\.(\d+)\.", k))}  # fmt: skip
        if found != set(range(len(found))):
            raise ValueError(
                f"Stage-{stage} blocks in the checkpoint are numbered {sorted(found)}; "
                "expected 0..n-1."
            )
        depths.append(len(found))
    hidden = (
        int(state_dict["block3.0.mlp.fc1_conv.weight"].shape[0])
        if depths[0]
        else 4 * e2
    )
    channels = int(state_dict["downsample1_1.encode_conv.weight"].shape[1])
    config = {
        "widths": [e0, e1, e2, e3],
        "num_layers": depths,
        "mlp_ratio": hidden / e2,
    }
    notes = {key: "shapes" for key in config}
    size = DEFAULTS["image_size"]
    fallback = {
        "num_heads": DEFAULTS["num_heads"],
        "num_timesteps": DEFAULTS["num_timesteps"],
        "image_shape": [size, size, channels],
        "attention_scale": DEFAULTS["attention_scale"],
    }
    for key, value in fallback.items():
        if given.get(key) is not None:
            config[key], notes[key] = given[key], "given"
        else:
            config[key], notes[key] = value, "default"
    for key, value in given.items():
        if key not in config and value is not None:
            config[key], notes[key] = value, "given"
    num_classes = int(state_dict["head.weight"].shape[0])
    notes["num_classes"] = "shapes"
    # A classifier argument (the preset loader routes it to the task).
    has_kd = "head_kd.weight" in state_dict
    wanted = given.get("distillation_head")
    if wanted is not None and bool(wanted) != has_kd:
        raise ValueError(
            f"distillation_head={bool(wanted)} (--distillation-head) contradicts the "
            f"checkpoint, which {'has' if has_kd else 'has no'} `head_kd` (the "
            "distillation head); without a preset it is read from the checkpoint. "
            + (
                "Drop --distillation-head, or name a preset (--preset) to add a "
                "freshly initialised head_kd for the T=1 -> T=4 fine-tune."
                if wanted
                else "Drop distillation_head=False."
            )
        )
    config["distillation_head"] = has_kd
    notes["distillation_head"] = (
        "shapes (head_kd present)"
        if config["distillation_head"]
        else "shapes (no head_kd)"
    )
    return config, num_classes, notes


def check_state_dict(model, state_dict, strict=True):
    """`head_kd` in the checkpoint must match the model's `distillation_head`.

    Called by `keras_spikformer.convert.load_reference_weights` before any
    tensor is assigned. A checkpoint without `head_kd` (the T=1 stage) loads
    into a model with the head when `strict=False` (the head stays fresh, as
    the reference's non-strict load for the T=4 fine-tune does).

    Raises:
        ValueError: naming the mismatch and the fix.
    """
    task = _parts(model)[1]
    if task is None:
        return
    has_kd = "head_kd.weight" in state_dict
    if has_kd == task.distillation_head or (not has_kd and not strict):
        return
    if has_kd:
        fix = (
            "build the model with distillation_head=True (CLI: --distillation-head, "
            "or omit --preset to infer it)"
        )
    else:
        fix = (
            "build the model with distillation_head=False, or load with strict=False "
            "to keep a freshly initialised head_kd (the T=1 -> T=4 fine-tune)"
        )
    raise ValueError(
        f"The checkpoint {'has' if has_kd else 'has no'} `head_kd` (the distillation "
        f"head) but the model was built with distillation_head="
        f"{task.distillation_head}: {fix}."
    )
