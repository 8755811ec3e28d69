"""E-SpikeFormer firing rates (integer levels) and SOPs / energy with T x D accounting.

An integer spike level `n` in `0..D` stands for `n` binary spikes over `D`
virtual time steps (`keras_spikformer.neurons.binary_expansion`). So, per
image, with `T` real steps:

- firing rate of a neuron = sum(n) / (elements x D): spikes per virtual step;
- SOPs of a conv/linear fed by a neuron = sum over its inputs of n x fan-out
  = mean level x T x MACs(one step), i.e. rate x T x D x MACs (the paper's
  method: energy = 0.9 pJ x SOPs + 4.6 pJ x MACs of real-valued inputs);
- layers fed real values (the stem conv on pixels, the Large main head on the
  real token mean) perform MACs.

Not counted: batch norms (foldable), residual additions, token means, and
the attention matrix products Q K^T V. Those are trilinear in the spikes, so
a per-virtual-step binary attention is not equivalent to the integer one (no
per-step SOP count exists for them; spec section 1.4). This is an estimate
by the paper's method, stated as such, not a hardware measurement.
"""

import numpy as np
from keras import ops

from keras_spikformer.analysis.op_counts import (
    E_AC,
    E_MAC,
    capture_inputs,
    layer_macs,
    step_shape,
)
from keras_spikformer.convert.e_spikeformer_weights import reference_module_map
from keras_spikformer.neurons.integer_spike import IntegerSpikeNeuron
from keras_spikformer.neurons.recording import record_spikes

# Layers fed real values (MACs); everything else is fed by an integer neuron.
REAL_INPUTS = {"downsample1_1.encode_conv"}
# Layers fed a pre-head neuron's integers (norm 1: the value is the level).
INTEGER_INPUTS = {"head", "head_kd"}


def _parts(model):
    from keras_spikformer.models.e_spikeformer import ESpikeFormerLargeBackbone

    backbone = getattr(model, "backbone", model)
    return backbone, isinstance(backbone, ESpikeFormerLargeBackbone)


def integer_firing_rates(model, images):
    """Per-neuron statistics of the integer levels on `images` (eval mode).

    Args:
        model: an `ESpikeFormer` / `ESpikeFormerLarge` or one of their backbones.
        images: model-ready batch `[B, H, W, C]`.

    Returns:
        dict of reference neuron name -> `{"mean_level", "firing_rate",
        "nonzero", "saturated"}`: mean integer level, spikes per virtual step
        (`mean_level / D`), fraction of non-zero and of `D` outputs.

    Example:
    >>> rates = integer_firing_rates(model, images)
    >>> rates["block3.0.attn.q_spike"]["firing_rate"]
    """
    modules = reference_module_map(model)
    neurons = {k: v for k, v in modules.items() if isinstance(v, IntegerSpikeNeuron)}
    with record_spikes() as record:
        model(images, training=False)
    out = {}
    for name, layer in neurons.items():
        if layer not in record:
            continue  # built, never called (the Large blocks' own neuron)
        levels = ops.convert_to_numpy(record.last(layer)) * layer.output_scale
        d = layer.spike_levels
        out[name] = {
            "mean_level": float(levels.mean()),
            "firing_rate": float(levels.mean() / d),
            "nonzero": float(np.mean(levels > 0)),
            "saturated": float(np.mean(levels >= d)),
        }
    return out


def synaptic_operations(model, images, e_mac=E_MAC, e_ac=E_AC):
    """SOPs and MACs per conv/linear layer and the energy estimate, per image.

    Args:
        model: an `ESpikeFormer` / `ESpikeFormerLarge` (classifier).
        images: model-ready batch `[B, H, W, C]`.
        e_mac, e_ac: joules per MAC / per accumulate (45 nm defaults).

    Returns:
        dict with `"layers"` (name -> `{"kind", "source", "macs",
        "mean_level", "sops", "energy_mj"}`), `"total_sops"`,
        `"total_macs"` (real-input layers), `"energy_mj"`, `"spike_levels"`,
        `"num_timesteps"` and `"method"`.

    Example:
    >>> report = synaptic_operations(model, images)
    >>> report["energy_mj"]
    """
    backbone, large = _parts(model)
    steps = backbone.num_timesteps if large else 1
    d = backbone.spike_levels
    modules = reference_module_map(model)
    layers = {k: v for k, v in modules.items() if hasattr(v, "kernel")}
    images = np.asarray(images)
    num_images = images.shape[0]
    with capture_inputs(layers) as stats:
        model(images, training=False)
    rows, total_sops, total_macs, energy = {}, 0.0, 0.0, 0.0
    for name, layer in layers.items():
        entry = stats[name]
        if not entry["size"]:
            continue  # not called (the off rep branch)
        per_step = step_shape(entry["shape"], num_images, steps)
        kind, macs = layer_macs(layer, per_step)
        if name in REAL_INPUTS or (large and name == "head"):
            source, level, sops = "real", None, 0.0
            ops_macs = float(macs) * (1 if name in REAL_INPUTS else steps)
            joules = ops_macs * e_mac
            total_macs += ops_macs
        else:
            scale = 1.0 if name in INTEGER_INPUTS else float(d)
            level = entry["sum"] * scale / entry["size"]
            source, sops = "integer spikes", level * steps * float(macs)
            joules = sops * e_ac
            total_sops += sops
        energy += joules
        rows[name] = {"kind": kind, "source": source, "macs": int(macs),
                      "mean_level": level, "sops": sops, "energy_mj": joules * 1e3}  # fmt: skip
    return {
        "layers": rows,
        "total_sops": total_sops,
        "total_macs": total_macs,
        "energy_mj": energy * 1e3,
        "spike_levels": d,
        "num_timesteps": steps,
        "method": (
            "paper's method: SOPs = mean integer level x T x MACs (= rate x T x D x "
            "MACs), E = 0.9 pJ x SOPs + 4.6 pJ x real-input MACs; attention "
            "products, BN, residuals not counted (see module docstring)"
        ),
    }
