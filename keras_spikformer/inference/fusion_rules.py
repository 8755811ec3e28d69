"""Which batch norms each family's layers apply directly to a dense/conv output.

A rule names `(linear attribute, batch-norm attribute[, folded first])` of a
layer class whose `call` computes `bn(linear(x))` with nothing in between but
already-folded batch norms (the optional third attribute) and uses
`linear(x)` nowhere else, so folding the batch norm into the linear layer is
exact algebra (see `fusion.folded_weights`). Batch norms after a pool, a
padding with batch-norm-derived values or another batch norm are not listed
and stay as they are.
"""

import keras

from keras_spikformer.layers.spiking_units import SpikingUnit


def _rules():
    from keras_spikformer.models.meta_spikeformer import (
        meta_spikeformer_attention,
        meta_spikeformer_repconv,
    )
    from keras_spikformer.models.meta_spikeformer import meta_spikeformer_layers as meta
    from keras_spikformer.models.spike_driven_transformer import (
        spike_driven_transformer_attention as sdt_attention,
    )
    from keras_spikformer.models.spike_driven_transformer import (
        spike_driven_transformer_layers as sdt_layers,
    )
    from keras_spikformer.models.spike_driven_transformer import (
        spike_driven_transformer_stem as sdt_stem,
    )

    return (
        # Spikformer, Spike-driven Transformer and QKFormer units: conv/dense ->
        # BN -> [pool ->] LIF (QKFormer's pool acts on the BN output).
        (SpikingUnit, (("synapse", "bn"),)),
        # Spike-driven Transformer V1.
        (sdt_attention.SpikeDrivenSelfAttention, (("proj", "proj_bn"),)),
        (sdt_layers.SpikeDrivenMLP, (("fc1", "fc1_bn"), ("fc2", "fc2_bn"))),
        (sdt_stem.SpikeDrivenPatchSplitting, (("stage_3_conv", "stage_3_bn"),)),
        (sdt_stem.MembraneRPE, (("conv", "bn"),)),
        # Meta-SpikeFormer: RepConv's first BN pads with BN-derived values
        # (stays); the attention's BNs follow RepConv's own BN and fold once
        # that one is folded into RepConv's last dense layer.
        (meta_spikeformer_repconv.MetaSpikeFormerRepConv, (("conv2", "bn"),)),
        (
            meta_spikeformer_attention.MetaSpikeFormerAttention,
            tuple(
                (f"{name}_conv.conv2", f"{name}_bn", f"{name}_conv.bn")
                for name in ("q", "k", "v", "proj")
            ),
        ),
        (meta.MetaSpikeFormerSepConv, (("pwconv1", "bn1"), ("pwconv2", "bn2"))),
        (meta.MetaSpikeFormerConvBlock, (("conv1", "bn1"), ("conv2", "bn2"))),
        (meta.MetaSpikeFormerDownsampling, (("conv", "bn"),)),
        (
            meta_spikeformer_attention.MetaSpikeFormerMLP,
            (("fc1", "fc1_bn"), ("fc2", "fc2_bn")),
        ),
    )


def folding_pairs(layer):
    """The `(linear attribute, batch-norm attribute)` pairs of `layer` to fold now.

    Pairs already folded (the batch norm replaced) and pairs waiting for
    another fold are not returned.

    Args:
        layer: any Keras layer.

    Returns:
        A list of attribute-name pairs, empty when the layer has none.

    Example:
    >>> folding_pairs(model.backbone.get_layer("block_0").mlp.fc1)  # [("synapse", "bn")]
    """
    pairs = []
    for cls, rules in _rules():
        if not isinstance(layer, cls):
            continue
        for linear, bn, *first in rules:
            if not _is_batch_norm(layer, bn) or _attribute(layer, linear) is None:
                continue
            if not any(_is_batch_norm(layer, name) for name in first):
                pairs.append((linear, bn))
    return pairs


def _attribute(layer, dotted):
    for name in dotted.split("."):
        layer = getattr(layer, name, None)
    return layer


def _is_batch_norm(layer, dotted):
    return isinstance(_attribute(layer, dotted), keras.layers.BatchNormalization)
