"""E-SpikeFormer analysis: integer firing rates and SOPs with T x D accounting.

The counting is numpy on recorded tensors (the forward itself is covered on
every backend by the exactness tests), so it runs once, in the TF pass.
"""

from pathlib import Path

import numpy as np
import pytest
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import load_reference_weights, read_checkpoint
from keras_spikformer.models.e_spikeformer import ESpikeFormer
from keras_spikformer.models.e_spikeformer.e_spikeformer_analysis import (
    integer_firing_rates,
    synaptic_operations,
)
from keras_spikformer.neurons import binary_expansion

DATA = Path(__file__).parent / "data"


@pytest.mark.backend_independent  # numpy counting; eager JAX forwards are slow
def test_sops_equal_binary_spikes_times_fan_out_and_rates_match_the_fixture():
    npz = np.load(DATA / "sdt_v3_base_small.npz")
    model = ESpikeFormer.from_preset("e_spikeformer_tiny_imagenet")
    state_dict = read_checkpoint(str(DATA / "sdt_v3_base_small.pth"), progress=False)
    load_reference_weights(model, state_dict.state_dict)
    images = npz["input"].transpose(0, 2, 3, 1)

    rates = integer_firing_rates(model, images)
    assert len(rates) == 105
    levels = npz["sn/block3.0.attn.q_spike"] * 4
    np.testing.assert_allclose(
        rates["block3.0.attn.q_spike"]["mean_level"], levels.mean()
    )
    np.testing.assert_allclose(
        rates["spike"]["firing_rate"], npz["sn/spike"].mean() / 4
    )

    report = synaptic_operations(model, images)
    mlp = model.backbone.get_layer("block3_0").mlp
    with record_spikes() as record:
        model(images, training=False)
    levels = ops.convert_to_numpy(record.last(mlp.fc1_spike)) * 4  # [B, H, W, C]
    spikes = ops.convert_to_numpy(binary_expansion(levels, 4))  # [D, B, H, W, C]
    np.testing.assert_array_equal(spikes.sum(axis=0), levels)
    # Each binary spike into fc1 reaches all of its 4C outputs: one accumulate each.
    expected = spikes.sum() * mlp.fc1.units / images.shape[0]
    np.testing.assert_allclose(
        report["layers"]["block3.0.mlp.fc1_conv"]["sops"], expected
    )
    stem = report["layers"]["downsample1_1.encode_conv"]
    assert stem["source"] == "real" and stem["sops"] == 0.0
    assert report["total_macs"] == stem["macs"]
    assert report["energy_mj"] > 0 and report["spike_levels"] == 4


@pytest.mark.backend_independent  # numpy counting; eager JAX forwards are slow
def test_large_report_counts_the_main_head_as_macs_and_the_kd_head_as_sops():
    npz = np.load(DATA / "sdt_v3_large_small.npz")
    model = ESpikeFormer.from_preset("e_spikeformer_large_tiny_imagenet")
    load_reference_weights(
        model, {k[3:]: npz[k] for k in npz.files if k.startswith("sd/")}
    )
    report = synaptic_operations(model, npz["input"].transpose(0, 2, 3, 1))
    head, head_kd = report["layers"]["head"], report["layers"]["head_kd"]
    assert head["source"] == "real" and head["sops"] == 0.0
    # head_kd reads the integers 0..D of the pre-head neuron: mean level x MACs.
    levels = npz["sn/lif"]  # [T, B, C]
    np.testing.assert_allclose(
        head_kd["sops"], levels.mean() * head_kd["macs"], rtol=1e-6
    )
    assert "block3.0.rep_conv.conv1" not in report["layers"]
    assert report["num_timesteps"] == 1 and report["spike_levels"] == 4
