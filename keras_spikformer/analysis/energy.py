"""Synaptic operations (SOPs) and an energy estimate, from the spikes of a real batch.

The method is the one of the Spikformer paper (appendix), which the
Spike-driven Transformer, QKFormer and Meta-SpikeFormer papers reuse:

- MACs of a layer are counted for ONE time step and one image:
  conv `H_out * W_out * k * k * C_in * C_out`, linear `tokens * D_in * D_out`,
  attention product `heads * rows * inner * cols`.
- SOPs(layer) = input firing rate x T x MACs(layer); energy = 0.9 pJ x SOPs.
- A layer whose input is real-valued (the encoding layer on images, a head
  on a time-averaged input, Meta-SpikeFormer's point-wise conv after a
  depthwise conv) performs MACs: energy = 4.6 pJ x MACs x (passes per image).

`CONVENTIONS` lists the choices shared by every family; each report appends
its family's rules (`energy_families.py`: which layers see spikes, which see
real values, how attention is counted). Generic counting: `op_counts.py`.
"""

import dataclasses
import json

import keras
import numpy as np

from keras_spikformer.analysis.energy_families import counting_rules
from keras_spikformer.analysis.firing_rates import (
    accumulate_spikes,
    as_batch,
    neuron_layer_names,
    split_batches,
)
from keras_spikformer.analysis.op_counts import (
    E_AC,
    E_MAC,
    capture_inputs,
    layer_macs,
    make_row,
    product_events,
    step_shape,
)
from keras_spikformer.convert.families import family_of_model
from keras_spikformer.neurons.recording import record_spikes

CONVENTIONS = """\
Counting conventions (per image; MACs are counted for ONE time step):
- conv: H_out * W_out * k * k * C_in / groups * C_out; linear (1x1 conv over
  tokens): tokens * D_in * D_out. Biases, batch norm (foldable into the
  preceding conv/linear), LIF membrane updates, max-pooling, masks (products
  with a binary tensor), the attention scale, head splitting/merging, residual
  sums and the token/time averages before the head are not counted.
- SOPs = input rate x T x MACs, with the input rate measured on the batch: the
  mean of the tensor that enters the layer (captured by temporarily wrapping
  the layer's `call` during one eager pass with training=False; restored after).
  For binary spikes this is the firing rate ("spikes"). For non-binary integer
  inputs (Spikformer/QKFormer residual streams of spike sums, DVS event counts)
  it is the mean count ("counts"): a 2 is two spikes arriving, two accumulates.
  A layer the rules count as SOPs that receives a non-integer value is an error.
- Attention products between spike tensors: the input rate is the measured
  fraction of a product's MACs whose two operands are both non-zero, so SOPs
  = the exact number of accumulates; a sum of spikes (SDT's token sum of K*V,
  QKFormer's channel sum of Q) costs one accumulate per spike.
- Real-valued inputs are MACs at e_mac: the encoding layer on images runs at
  every one of the T steps, as in the references (MAC ops = T x MACs); a head
  on the token/time mean runs once. With event-frame input (DVS) the encoding
  layer takes events and is counted as SOPs like the other layers.
- Energy = e_mac x MAC ops + e_ac x SOPs. ANN equivalent: the same network run
  once (no time steps) with every operation a MAC: e_mac x sum of MACs.
"""


@dataclasses.dataclass
class EnergyReport:
    """Per-layer MACs, measured input rates, SOPs and energy of one model on a batch.

    All figures are per image. `layers` holds one dict per counted operation
    with keys `name` (reference-style), `kind` (`"conv"`, `"linear"`,
    `"attention product"`), `input` (`"real"`, `"spikes"`, `"counts"`,
    `"events"`), `macs` (one time step), `timesteps` (passes per image),
    `input_rate` (`None` for real-valued inputs), `sops`, `mac_ops` and
    `energy_mj`.

    Attributes:
        total_sops: float, giga synaptic operations (accumulates) per image.
        total_mac_ops: float, giga MACs on real-valued inputs per image.
        total_mj: float, energy per image in millijoules.
        ann_macs: float, giga MACs of one pass without time steps.
        ann_mj: float, `ann_macs` at `e_mac`, in millijoules.
    """

    model_name: str
    num_timesteps: int
    num_images: int
    e_mac: float
    e_ac: float
    layers: list
    firing_rates: dict
    conventions: str = CONVENTIONS

    @property
    def total_sops(self):
        return sum(row["sops"] for row in self.layers) / 1e9

    @property
    def total_mac_ops(self):
        return sum(row["mac_ops"] for row in self.layers) / 1e9

    @property
    def total_mj(self):
        return sum(row["energy_mj"] for row in self.layers)

    @property
    def ann_macs(self):
        return sum(row["macs"] for row in self.layers) / 1e9

    @property
    def ann_mj(self):
        return self.ann_macs * 1e9 * self.e_mac * 1e3

    def to_dict(self):
        return {
            "model": self.model_name,
            "num_timesteps": self.num_timesteps,
            "num_images": self.num_images,
            "e_mac_pj": self.e_mac * 1e12,
            "e_ac_pj": self.e_ac * 1e12,
            "total_sops_g": self.total_sops,
            "total_mac_ops_g": self.total_mac_ops,
            "total_mj": self.total_mj,
            "ann_macs_g": self.ann_macs,
            "ann_mj": self.ann_mj,
            "layers": [dict(row) for row in self.layers],
            "firing_rates": dict(self.firing_rates),
            "conventions": self.conventions,
        }

    def to_json(self, indent=2):
        """The report as a JSON string (figures per image; energy in mJ)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self):
        """The per-layer table, totals and conventions as Markdown."""

        def num(x, scale=1.0, digits=3):
            return "-" if x is None else f"{x / scale:,.{digits}f}"

        lines = [
            f"### Energy of `{self.model_name}` (T={self.num_timesteps}, "
            f"measured on {self.num_images} image(s); "
            f"E_MAC={self.e_mac * 1e12:g} pJ, E_AC={self.e_ac * 1e12:g} pJ)",
            "",
            "| layer | kind | input | MACs/step (M) | passes | input rate "
            "| SOPs (M) | MAC ops (M) | energy (mJ) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.layers:
            lines.append(
                f"| {row['name']} | {row['kind']} | {row['input']} "
                f"| {num(row['macs'], 1e6)} | {row['timesteps']} "
                f"| {num(row['input_rate'], digits=4)} | {num(row['sops'], 1e6)} "
                f"| {num(row['mac_ops'], 1e6)} | {num(row['energy_mj'], digits=4)} |"
            )
        lines.append(
            f"| **total** | | | {num(self.ann_macs * 1e3)} | | "
            f"| {num(self.total_sops * 1e3)} | {num(self.total_mac_ops * 1e3)} "
            f"| {num(self.total_mj, digits=4)} |"
        )
        lines += [
            "",
            f"- SOPs: **{self.total_sops:.3f} G** per image; energy: "
            f"**{self.total_mj:.3f} mJ** per image.",
            f"- ANN equivalent (one pass, all MACs): {self.ann_macs:.3f} G MACs, "
            f"{self.ann_mj:.3f} mJ.",
            "",
            "```",
            self.conventions.rstrip(),
            "```",
            "",
        ]
        return "\n".join(lines)


def _owners(backbone):
    """`{id(sublayer): num_heads}` of the innermost layer with `num_heads`."""
    heads = {}
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        if hasattr(layer, "num_heads"):
            for sub in layer._flatten_layers(include_self=False, recursive=True):
                heads[id(sub)] = int(layer.num_heads)
    return heads


def _attention_events(events, record, modules, sites, heads, num_images, steps):
    """Adds one batch's attention events into `events` (`{row: [macs, count]}`)."""
    for site in sites:
        if site.kind == "sum":  # counted from the gate neuron's input afterwards
            summed = keras.ops.convert_to_numpy(record.last(modules[site.neurons[0]]))
            events.setdefault(site, [summed.size // (num_images * steps), 0.0])
            continue
        q, k, v = (
            keras.ops.convert_to_numpy(record.last(modules[name]))
            for name in site.neurons
        )
        dim = q.shape[-1]
        q, k, v = (x.reshape(num_images, steps, -1, dim) for x in (q, k, v))
        num_heads = heads[id(modules[site.neurons[0]])]
        names, macs, counts = product_events(q, k, v, num_heads, site.order)
        for name, m, c in zip(names, macs, counts, strict=True):
            events.setdefault((site, name), [m, 0.0])[1] += c


def energy_report(model, images, e_mac=E_MAC, e_ac=E_AC, batch_size=None):
    """Counts MACs and SOPs of a model of the zoo on `images`; estimates its energy.

    Runs one eager forward pass (`training=False`) that measures the input
    rate of every conv, linear and attention operation (see `CONVENTIONS` and
    the family's rules in `report.conventions`), then applies
    `E = e_mac x MAC ops + e_ac x SOPs` per image. The model and its outputs
    are unchanged.

    Args:
        model: a classifier or backbone of the Spikformer, Spike-driven
            Transformer, QKFormer or Meta-SpikeFormer family (no head rows
            for a backbone).
        images: array-like batch the model takes.
        e_mac: float, joules per MAC. Defaults to `4.6e-12`.
        e_ac: float, joules per accumulate (synaptic operation). Defaults to
            `0.9e-12`.
        batch_size: int or `None`, run the batch in slices of this size.

    Returns:
        An `EnergyReport` (per-image figures, per-layer rows in call order,
        `to_json()`, `to_markdown()`, `conventions`).

    Raises:
        TypeError: for models of no supported family.
        ValueError: for an empty batch, an input shape the model rejects, or a
            layer counted as SOPs that received non-integer values.

    Example:
    >>> report = energy_report(model, images[:8])
    >>> print(report.total_sops, report.total_mj)
    >>> print(report.to_markdown())

    References:
        Zhou et al., ICLR 2023 (arXiv 2209.15425), appendix (energy).
    """
    try:
        modules = family_of_model(model).reference_module_map(model)
    except ValueError:
        modules = {}
    rules = counting_rules(model, modules)
    backbone = getattr(model, "backbone", model)
    images = as_batch(images)
    steps = backbone.num_timesteps
    synapses = {
        name: layer
        for name, layer in modules.items()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense,
                              keras.layers.DepthwiseConv2D))
    }  # fmt: skip
    sums = [site for site in rules.attention if site.kind == "sum"]
    gates = {site.neurons[1]: modules[site.neurons[1]] for site in sums}
    neurons = neuron_layer_names(model)
    heads = _owners(backbone)
    events, lif_totals = {}, {}
    with capture_inputs({**synapses, **gates}) as inputs:
        for batch in split_batches(images, batch_size):
            with record_spikes() as record:
                model(batch, training=False)
            accumulate_spikes(lif_totals, record, neurons)
            _attention_events(
                events, record, modules, rules.attention, heads, len(batch), steps
            )
    if any(inputs[name]["size"] == 0 for name in synapses):
        raise ValueError(
            "Some layer inputs were not captured: energy_report needs an eager "
            "forward pass; call it outside `tf.function`/`jax.jit`."
        )
    last = len(images) if batch_size is None else (len(images) - 1) % batch_size + 1
    rows = _rows(rules, synapses, inputs, events, backbone, last, steps, e_mac, e_ac)
    rows = _with_attention(rows, rules, events, inputs, len(images), steps, e_mac, e_ac)
    rates = {
        name: (total / count if count else float("nan"))
        for name, (total, count) in lif_totals.items()
    }
    return EnergyReport(
        model_name=model.name,
        num_timesteps=steps,
        num_images=len(images),
        e_mac=float(e_mac),
        e_ac=float(e_ac),
        layers=rows,
        firing_rates=rates,
        conventions=CONVENTIONS + "\n" + rules.notes + "\n",
    )


def _rows(rules, synapses, inputs, events, backbone, last, steps, e_mac, e_ac):
    """One row per conv / linear (or folded group), in call order."""
    rows, done = [], set()
    order = sorted(synapses, key=lambda name: inputs[name]["order"])
    for name in order:
        layer, stats = synapses[name], inputs[name]
        shape = step_shape(stats["shape"], last, steps)
        group = rules.fused_group(name)
        if group is not None:
            if group in done:
                continue
            done.add(group)
            entry = inputs[f"{group}.body.0"]
            shape = step_shape(entry["shape"], last, steps)
            out = synapses[f"{group}.body.2.1"].units
            macs = int(np.prod(shape[:-1])) * 9 * shape[-1] * out
            rate = entry["sum"] / entry["size"]
            kind = "conv (RepConv folded to 3x3)"
            source = _source(rules, group, entry)
            rows.append(make_row(group, kind, source, macs, steps, rate, e_mac, e_ac))
            continue
        kind, macs = layer_macs(layer, shape)
        rate, passes = stats["sum"] / stats["size"], steps
        if name in rules.once:
            source, rate, passes = "real", None, 1
        elif name == rules.encoding:
            if getattr(backbone, "encoding", "direct") == "direct":
                source, rate = "real", None
            else:
                source = "events"
        elif rules.is_real(name):
            source, rate = "real", None
        else:
            source = _source(rules, name, stats)
        rows.append(make_row(name, kind, source, macs, passes, rate, e_mac, e_ac))
    return rows


def _source(rules, name, stats):
    """The rules' input kind of `name`, checked against what it received."""
    source = rules.source(name)
    if stats["binary"] or (source == "counts" and stats["integer"]):
        return source
    received = "spike counts above 1" if stats["integer"] else "non-integer values"
    raise ValueError(
        f"The {rules.family} counting rules say {name} receives {source}, but it "
        f"received {received}; the rules (keras_spikformer/analysis/"
        "energy_families.py) do not fit this model."
    )


def _with_attention(rows, rules, events, inputs, num_images, steps, e_mac, e_ac):
    """Inserts the attention rows before each site's output projection."""
    for site in rules.attention:
        if site.kind == "sum":
            macs = events[site][0]
            count = inputs[site.neurons[1]]["sum"]
            suffix = "kv_sum" if site.neurons[0].endswith("k_lif") else "q_sum"
            new = [(f"{site.prefix}.{suffix}", macs, count, "attention sum")]
        else:
            new = [
                (f"{site.prefix}.{key[1]}", *events[key], "attention product")
                for key in events
                if isinstance(key, tuple) and key[0] == site
            ]
        made = [
            make_row(name, kind, "spikes", macs, steps,
                     count / (num_images * steps * macs), e_mac, e_ac)
            for name, macs, count, kind in new
        ]  # fmt: skip
        at = next(
            (i for i, row in enumerate(rows)
             if row["name"].startswith(f"{site.prefix}.proj")),
            len(rows),
        )  # fmt: skip
        rows[at:at] = made
    return rows
