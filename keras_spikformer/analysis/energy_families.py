"""Per-family counting rules: which layers see spikes, which see real values.

`counting_rules(model)` returns the `CountingRules` of the model's family.
Every conv / linear layer of the reference module map is counted; the rules
name the exceptions to "input = spikes (or spike counts): SOPs":

- `encoding`: the layer fed the network input: MACs on images (at each of the
  T steps, as the references run it), SOPs on DVS event frames.
- `once`: layers run once per image on a time-averaged real input (MACs).
- `real`: name suffixes of layers fed real values at every step (MACs).
- `counts`: a regex of layers fed a residual stream of spike sums {0, 1, 2, ...}
  (SOPs at the mean count); every other layer is fed binary spikes.
- `fused`: layer groups counted as the one conv they fold into (Meta's RepConv).
- attention: the products / sums between spike tensors, found from the
  reference names of the neurons that feed them.
"""

import dataclasses
import re

from keras_spikformer.convert.families import family_of_model

SPIKFORMER_NOTES = """\
Spikformer (Zhou et al., ICLR 2023, appendix): residual stream = spike sums,
so q/k/v and fc1 see counts {0, 1, 2, ...}; the head reads the token/time mean
(real, one pass); attention products in the order the model computes them."""

SDT_NOTES = """\
Spike-driven Transformer V1 (Yao et al., NeurIPS 2023, Table 1 / appendix):
membrane shortcuts, so every branch starts with a LIF and every conv / linear
after the encoding layer sees binary spikes; the real-valued residual stream
(stem output, block outputs) only feeds neurons, whose additions are not
counted. The head runs at each step on head_lif spikes (SOPs). SDSA
Q * LIF(sum_tokens(K * V)): the Hadamard products are masks (not counted); the
token sum costs one accumulate per non-zero of K * V (row `attn.kv_sum`, MACs
= tokens x channels, rate = fraction of non-zeros); the 0.5 threshold is a
neuron parameter. The unused talking-heads weight runs nothing."""

QKFORMER_NOTES = """\
QKFormer (Zhou et al., NeurIPS 2024): residual stream = spike sums (counts),
as Spikformer; patch-embedding convs fed by the stream see counts. Q-K token
attention LIF(sum over each head's channels of Q) * K: the channel sum costs
one accumulate per Q spike (row `q_sum`, MACs = tokens x channels); the mask
is not counted. Stage-3 SSA products in the reference's order q (k^T v). The
head reads the token/time mean of the stream (real, one pass)."""

META_NOTES = """\
Meta-SpikeFormer (Yao et al., ICLR 2024): membrane shortcuts, every branch
starts with a LIF. Each RepConv (1x1 -> BN-and-pad -> depthwise 3x3 -> 1x1 ->
BN) is linear, so it folds exactly into one 3x3 conv C_in -> C_out on the
RepConv's spike input (the BN(0) border becomes part of the bias): it is
counted that way (row `<...>_conv.0`, inference form, as the paper's
re-parameterised design intends). The separable conv's second point-wise conv
reads the depthwise 7x7 output, a real value: MACs at every step (not folded).
Attention LIF(0.125 Q (K^T V)) products in the reference's order; the 0.125
scale folds into the threshold. The head(s) read head LIF spikes per step."""

MAXFORMER_NOTES = """\
Max-Former / MS-QKFormer (Fang et al., NeurIPS 2025): membrane shortcuts, as
SDT V1: every branch starts with a LIF, so every conv / linear after the
encoding conv (depth-wise mixers, embedding shortcuts, q/k/v, proj, MLP) sees
binary spikes; max pools and the real-valued stream are not counted. Stage-3
SSA products in the reference's order q (k^T v); MS-QKFormer's Q-K token
attention sums each head's Q channels (row `q_sum`). The head runs at each
step on head_lif spikes (SOPs)."""

# QKFormer layers fed the residual stream: q/k(/v) and the first MLP layer of
# every block, and the two convs of a stage's patch embedding that read it.
QKFORMER_STREAM = (
    r"(stage\d\.\d+\.t?ssa\.(q|k|v)_conv|\.mlp1_conv"
    r"|patch_embed[23]\.(proj3|proj_res)_conv)$"
)


@dataclasses.dataclass(frozen=True)
class Attention:
    """One attention site: `kind` `"products"` (q/k/v neurons) or `"sum"`."""

    prefix: str
    kind: str
    neurons: tuple  # reference names: (q, k, v) for products, (summed, gate) for sums
    order: str = "auto"


@dataclasses.dataclass(frozen=True)
class CountingRules:
    family: str
    encoding: str
    once: tuple = ()
    real: tuple = ()
    counts: str = ""  # regex of layers fed spike sums
    fused: tuple = ()  # regex of group prefixes folded into one 3x3 conv
    attention: tuple = ()
    notes: str = ""

    def is_real(self, name):
        return name.endswith(self.real) if self.real else False

    def source(self, name):
        """`"counts"` for layers fed spike sums, else `"spikes"`."""
        return "counts" if self.counts and re.search(self.counts, name) else "spikes"

    def fused_group(self, name):
        """The fused group `name` belongs to, or `None`."""
        for pattern in self.fused:
            match = re.match(pattern, name)
            if match:
                return match.group(1)
        return None


def _blocks(names, pattern):
    """Distinct prefixes matching `pattern` (one capture group), in model order."""
    out = []
    for name in names:
        match = re.match(pattern, name)
        if match and match.group(1) not in out:
            out.append(match.group(1))
    return out


def counting_rules(model, modules):
    """The `CountingRules` of `model`'s family.

    Args:
        model: a classifier or backbone of the zoo's families.
        modules: its reference module map (name -> layer).

    Raises:
        TypeError: for models of no supported family.
    """
    try:
        family = family_of_model(model).FAMILY
    except ValueError as error:
        raise TypeError(
            "energy_report counts the operations of the zoo's families (Spikformer, "
            "Spike-driven Transformer, QKFormer, Meta-SpikeFormer); got "
            f"{type(model).__name__}. Use firing_rates() for other spiking models."
        ) from error
    names = list(modules)
    if family == "spikformer":
        sites = [
            Attention(p, "products", tuple(f"{p}.{x}_lif" for x in "qkv"))
            for p in _blocks(names, r"(block\.\d+\.attn)\.q_lif$")
        ]
        return CountingRules(
            family, "patch_embed.proj_conv", once=("head",), attention=tuple(sites),
            counts=r"(\.(q|k|v)_linear|\.fc1_linear)$", notes=SPIKFORMER_NOTES,
        )  # fmt: skip
    if family == "spike_driven_transformer":
        sites = [
            Attention(p, "sum", (f"{p}.k_lif", f"{p}.talking_heads_lif"))
            for p in _blocks(names, r"(block\.\d+\.attn)\.talking_heads_lif$")
        ]
        return CountingRules(
            family, "patch_embed.proj_conv", attention=tuple(sites), notes=SDT_NOTES
        )
    if family == "qkformer":
        sites = [
            Attention(p, "sum", (f"{p}.q_lif", f"{p}.attn_lif"))
            for p in _blocks(names, r"(stage\d\.\d+\.tssa)\.attn_lif$")
        ] + [
            Attention(p, "products", tuple(f"{p}.{x}_lif" for x in "qkv"), "kv_first")
            for p in _blocks(names, r"(stage\d\.\d+\.ssa)\.attn_lif$")
        ]
        return CountingRules(
            family, "patch_embed1.proj_conv", once=("head",), attention=tuple(sites),
            counts=QKFORMER_STREAM, notes=QKFORMER_NOTES,
        )  # fmt: skip
    if family in ("maxformer", "ms_qkformer"):
        sites = [
            Attention(p, "sum", (f"{p}.q_lif", f"{p}.attn_lif"))
            for p in _blocks(names, r"(stage[12]\.\d+\.attn)\.attn_lif$")
        ] + [
            Attention(p, "products", tuple(f"{p}.{x}_lif" for x in "qkv"), "kv_first")
            for p in _blocks(names, r"(stage3\.\d+\.attn)\.attn_lif$")
        ]
        imagenet = getattr(model, "backbone", model).flavour == "imagenet"
        encoding = (
            "patch_embed1.embed1.embed_conv"
            if family == "maxformer" and imagenet
            else "patch_embed1.proj_conv"
        )
        return CountingRules(
            family, encoding, attention=tuple(sites), notes=MAXFORMER_NOTES
        )
    if family == "meta_spikeformer":
        sites = [
            Attention(p, "products", tuple(f"{p}.{x}_lif" for x in "qkv"), "kv_first")
            for p in _blocks(names, r"(block\d\.\d+\.attn)\.attn_lif$")
        ]
        return CountingRules(
            family, "downsample1_1.encode_conv", real=(".Conv.pwconv2",),
            fused=(r"(.*_conv\.0)\.body\.",), attention=tuple(sites), notes=META_NOTES,
        )  # fmt: skip
    if family.startswith("e_spikeformer"):
        raise TypeError(
            "E-SpikeFormer neurons emit integer levels (T x D accounting), not LIF "
            "spikes: use keras_spikformer.models.e_spikeformer.e_spikeformer_analysis"
            " (integer_firing_rates, synaptic_operations)."
        )
    raise TypeError(f"No counting rules for the {family} family.")
