"""Synaptic operations (SOPs) and an energy estimate, from the spikes of a real batch.

The method is the one of the Spikformer paper (appendix), made explicit:

- MACs of a layer are counted for ONE time step and one image:
  conv `H_out * W_out * k * k * C_in * C_out`, linear `tokens * D_in * D_out`,
  attention product `heads * rows * inner * cols`.
- SOPs(layer) = input firing rate x T x MACs(layer); energy = 0.9 pJ x SOPs.
- A layer whose input is real-valued (the first SPS conv on images, the head)
  performs MACs: energy = 4.6 pJ x MACs x (times it runs per image).

`CONVENTIONS` lists every choice (what the "rate" of a non-binary input is,
which attention products are counted, what is left out).
"""

import contextlib
import dataclasses
import json

import keras
import numpy as np

from keras_spikformer.analysis.firing_rates import (
    accumulate_spikes,
    as_batch,
    is_spikformer,
    neuron_layer_names,
    split_batches,
)
from keras_spikformer.convert.spikformer_weights import reference_module_map
from keras_spikformer.neurons.recording import record_spikes

E_MAC = 4.6e-12  # joules per 32-bit float multiply-accumulate (45 nm, Horowitz 2014)
E_AC = 0.9e-12  # joules per 32-bit float accumulate

CONVENTIONS = """\
Counting conventions (per image; MACs are counted for ONE time step):
- conv: H_out * W_out * k * k * C_in * C_out (stride 1, 'same' padding, so
  H_out = H_in); linear (1x1 conv over tokens): tokens * D_in * D_out. Biases,
  batch norm (foldable into the preceding conv/linear), LIF membrane updates,
  max-pooling, the attention scale, head splitting/merging, residual sums and
  the token/time averages before the head are not counted.
- SOPs = input rate x T x MACs, with the input rate measured on the batch: the
  mean of the tensor that enters the layer (captured by temporarily wrapping
  the layer's `call` during one eager pass with training=False; restored after).
  For binary spikes this is the firing rate. For the non-binary inputs (the
  residual stream feeding q/k/v and fc1, values in {0, 1, 2, ...}, and DVS
  event counts) it is the mean count: the number of synaptic events per input
  neuron and time step (a 2 is two spikes arriving, two accumulates).
- Attention products (no softmax) are counted in the order the model computes
  them: (q k^T) v when tokens < head size, else q (k^T v). For a product the
  input rate is the measured fraction of its MACs whose two operands are both
  non-zero (one operand is always binary, so each such MAC is one accumulate);
  SOPs = that fraction x T x MACs = the exact number of accumulates.
- Real-valued inputs are MACs at e_mac: the first SPS conv on images (it runs
  at every one of the T steps, as in the reference, so its MAC ops = T x MACs)
  and the classification head (one pass on the token/time mean, D x classes).
  With event-frame input (DVS) the first conv takes events and is counted as
  SOPs like the other layers.
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


@contextlib.contextmanager
def capture_inputs(layers):
    """Sums the inputs that `layers` receive in eager calls, then restores them.

    Each layer's `call` is wrapped (an instance attribute shadowing the method)
    for the duration of the block; the wrapper records the input's sum, size and
    per-sample shape and calls the original, so outputs are unchanged. The
    layers are restored on exit, also on error.

    Args:
        layers: dict of name -> Keras layer.

    Yields:
        dict of name -> `{"sum": float, "size": int, "shape": tuple or None}`.
    """
    stats = {name: {"sum": 0.0, "size": 0, "shape": None} for name in layers}
    patched = []

    def wrap(name, original):
        def call(inputs, *args, **kwargs):
            if type(inputs).__name__ != "KerasTensor":
                array = keras.ops.convert_to_numpy(inputs)
                stats[name]["sum"] += float(np.sum(array, dtype=np.float64))
                stats[name]["size"] += array.size
                stats[name]["shape"] = tuple(array.shape[1:])
            return original(*((inputs,) + args), **kwargs)

        return call

    try:
        for name, layer in layers.items():
            own = layer.__dict__.get("call")
            patched.append((layer, own))
            object.__setattr__(layer, "call", wrap(name, layer.call))
        yield stats
    finally:
        for layer, own in reversed(patched):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)


def conv_macs(layer, input_shape):
    """MACs of `keras.layers.Conv2D` for one sample of shape `input_shape` (HWC)."""
    out = layer.compute_output_shape((1,) + tuple(input_shape))
    k = int(np.prod(layer.kernel_size))
    groups = getattr(layer, "groups", 1) or 1
    return int(np.prod(out[1:-1])) * k * (input_shape[-1] // groups) * out[-1]


def dense_macs(layer, input_shape):
    """MACs of `keras.layers.Dense` for one sample of shape `input_shape`."""
    return (
        int(np.prod(input_shape[:-1], dtype=np.int64)) * input_shape[-1] * layer.units
    )


def product_events(q, k, v, num_heads):
    """Exact accumulate counts of the two attention products, in model order.

    Args:
        q, k, v: `[batch, time, tokens, D]` binary arrays.
        num_heads: int.

    Returns:
        `(names, macs_per_step, events)`: the two products' names, their MACs
        per image and time step, and the number of MACs with both operands
        non-zero summed over batch and time.
    """
    b, t, n, dim = q.shape
    d = dim // num_heads

    def heads(x):  # [B, T, N, D] -> [B, T, heads, N, d]
        return x.astype(np.float64).reshape(b, t, n, num_heads, d).swapaxes(2, 3)

    q, k, v = heads(q), heads(k), heads(v)
    if n < d:  # SpikingSelfAttention: (q k^T) v
        scores = np.einsum("bthnc,bthmc->bthnm", q, k)
        first = np.einsum("bthc,bthc->", q.sum(3), k.sum(3))
        second = np.einsum("bthm,bthm->", (scores != 0).sum(3), v.sum(4))
        names = ("q@k^T", "(q@k^T)@v")
        macs = num_heads * n * n * d
    else:  # q (k^T v)
        kv = np.einsum("bthnc,bthne->bthce", k, v)
        first = np.einsum("bthn,bthn->", k.sum(4), v.sum(4))
        second = np.einsum("bthc,bthc->", q.sum(3), (kv != 0).sum(4))
        names = ("k^T@v", "q@(k^T@v)")
        macs = num_heads * d * d * n
    return names, (macs, macs), (float(first), float(second))


def _row(name, kind, source, macs, timesteps, rate, e_mac, e_ac):
    if rate is None:  # real-valued input: MACs
        sops, mac_ops = 0.0, float(macs * timesteps)
    else:
        sops, mac_ops = float(rate * timesteps * macs), 0.0
    return {
        "name": name,
        "kind": kind,
        "input": source,
        "macs": int(macs),
        "timesteps": int(timesteps),
        "input_rate": None if rate is None else float(rate),
        "sops": sops,
        "mac_ops": mac_ops,
        "energy_mj": (sops * e_ac + mac_ops * e_mac) * 1e3,
    }


def energy_report(model, images, e_mac=E_MAC, e_ac=E_AC, batch_size=None):
    """Counts MACs and SOPs of a Spikformer on `images` and estimates its energy.

    Runs one eager forward pass (`training=False`) that measures the input
    rate of every conv, linear and attention product (see `CONVENTIONS`),
    then applies `E = e_mac x MAC ops + e_ac x SOPs` per image. The model and
    its outputs are unchanged.

    Args:
        model: a `Spikformer` or `SpikformerBackbone` (no head row then).
        images: array-like batch the model takes.
        e_mac: float, joules per MAC. Defaults to `4.6e-12`.
        e_ac: float, joules per accumulate (synaptic operation). Defaults to
            `0.9e-12`.
        batch_size: int or `None`, run the batch in slices of this size.

    Returns:
        An `EnergyReport` (per-image figures, per-layer rows, `to_json()`,
        `to_markdown()`, `conventions`).

    Raises:
        TypeError: for models other than Spikformer ones.
        ValueError: for an empty batch or an input shape the model rejects.

    Example:
    >>> report = energy_report(model, images[:8])
    >>> print(report.total_sops, report.total_mj)
    >>> print(report.to_markdown())

    References:
        Zhou et al., ICLR 2023 (arXiv 2209.15425), appendix (energy).
    """
    if not is_spikformer(model):
        raise TypeError(
            "energy_report counts the operations of a Spikformer or "
            f"SpikformerBackbone; got {type(model).__name__}. Use firing_rates() "
            "for other spiking models."
        )
    backbone = getattr(model, "backbone", model)
    images = as_batch(images)
    num_timesteps = backbone.num_timesteps
    modules = reference_module_map(model)
    synapses = {
        name: layer
        for name, layer in modules.items()
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    }
    neurons = neuron_layer_names(model)
    attn = [backbone.get_layer(f"block_{i}").attn for i in range(backbone.num_layers)]
    events = {}
    lif_totals = {}
    with capture_inputs(synapses) as inputs:
        for batch in split_batches(images, batch_size):
            with record_spikes() as record:
                model(batch, training=False)
            accumulate_spikes(lif_totals, record, neurons)
            for i, layer in enumerate(attn):
                q, k, v = (
                    keras.ops.convert_to_numpy(record.last(unit.lif))
                    for unit in (layer.q, layer.k, layer.v)
                )
                names, macs, counts = product_events(q, k, v, layer.num_heads)
                for name, m, c in zip(names, macs, counts, strict=True):
                    key = f"block.{i}.attn.{name}"
                    events[key] = (m, events.get(key, (m, 0.0))[1] + c)
    if any(stats["size"] == 0 for stats in inputs.values()):
        raise ValueError(
            "No layer inputs were captured: energy_report needs an eager forward "
            "pass; call it outside `tf.function`/`jax.jit`."
        )

    num_images = images.shape[0]
    first_conv = "patch_embed.proj_conv"
    rows = []
    for name, layer in synapses.items():
        stats = inputs[name]
        shape = stats["shape"]
        if name.endswith(".proj_linear") and name.startswith("block."):
            prefix = name[: -len("proj_linear")]
            for key, (macs, count) in events.items():
                if key.startswith(prefix):
                    rate = count / (num_images * num_timesteps * macs)
                    rows.append(
                        _row(key, "attention product", "spikes", macs,
                             num_timesteps, rate, e_mac, e_ac)
                    )  # fmt: skip
        if isinstance(layer, keras.layers.Conv2D):
            kind, macs = "conv", conv_macs(layer, shape)
        else:
            kind, macs = "linear", dense_macs(layer, shape)
        rate = stats["sum"] / stats["size"]
        timesteps = num_timesteps
        if name == "head":
            source, rate, timesteps = "real", None, 1
        elif name == first_conv:
            if backbone.encoding == "direct":
                source, rate = "real", None
            else:
                source = "events"
        elif name.endswith(("q_linear", "k_linear", "v_linear", "fc1_linear")):
            source = "counts"
        else:
            source = "spikes"
        rows.append(_row(name, kind, source, macs, timesteps, rate, e_mac, e_ac))

    rates = {
        name: (total / count if count else float("nan"))
        for name, (total, count) in lif_totals.items()
    }
    return EnergyReport(
        model_name=model.name,
        num_timesteps=num_timesteps,
        num_images=num_images,
        e_mac=float(e_mac),
        e_ac=float(e_ac),
        layers=rows,
        firing_rates=rates,
        conventions=CONVENTIONS,
    )
