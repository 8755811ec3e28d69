"""Firing rates and energy of every successor family, checked against the reference fixtures."""

import functools

import numpy as np
import pytest
from conftest import images_of, load_fixture, state_dict_of

from keras_spikformer import preset_builder, presets
from keras_spikformer.analysis import energy_report, firing_rates
from keras_spikformer.analysis.energy_families import counting_rules
from keras_spikformer.convert import load_reference_weights
from keras_spikformer.convert.families import family_of_state_dict

# What each fixture was built with that the shapes cannot tell (their README).
GIVEN = {
    "sdt_v1_small": {},
    "qkformer_small": {},
    "sdt_v2_small": {"num_heads": 4, "image_shape": (64, 64, 3)},
}
TINY = ["sdt_tiny_cifar", "qkformer_tiny_cifar", "meta_spikeformer_tiny_imagenet"]


@functools.cache
def fixture_model(name):
    """The fixture's model with the reference weights (built once; no test changes it)."""
    npz, config = load_fixture(name)
    state_dict = state_dict_of(npz)
    family, task_cls = family_of_state_dict(state_dict)
    backbone_config, num_classes, _ = family.infer_architecture(
        state_dict, num_timesteps=config["T"], **GIVEN[name]
    )
    model = preset_builder.build_task(
        task_cls, {**backbone_config, "num_classes": num_classes}
    )
    assert load_reference_weights(model, state_dict).ok
    return model, npz, config


@pytest.mark.parametrize("name", sorted(GIVEN))
def test_firing_rates_match_reference_spikes(name):
    model, npz, config = fixture_model(name)
    rates = firing_rates(model, images_of(npz))
    reference = {
        k[len("lif/") :]: float(npz[k].mean())
        for k in npz.files
        if k.startswith("lif/")
    }
    unused = set(config.get("lif_unused", []))
    assert set(rates) - unused == set(reference), set(rates) ^ set(reference)
    for layer, rate in reference.items():
        assert rates[layer] == pytest.approx(rate, abs=1e-7), layer


def spikes(npz, name):
    return npz[f"lif/{name}"].astype(np.float64)


def hand_counts(name, npz, t, b):
    """`{row: (MACs per step, SOPs per image or "real")}` worked out by hand.

    Spike inputs use the reference's own spikes (`lif/...`), so a wrong MAC
    count, rate, time factor or attention rule fails the comparison.
    """
    if name == "sdt_v1_small":  # width 48 (stem 6/12/24/48), pooling '0011': 8x8 tokens
        k, v = spikes(npz, "block.0.attn.k_lif"), spikes(npz, "block.0.attn.v_lif")
        head = spikes(npz, "head_lif")  # the head runs at each step on head_lif spikes
        return {
            "block.0.attn.kv_sum": (64 * 48, (k * v).sum() / b),
            "head": (48 * 10, head.mean() * t * 48 * 10),
            "patch_embed.proj_conv": (32 * 32 * 9 * 3 * 6, "real"),
        }
    if name == "qkformer_small":  # stage widths 16/32/64 on 32x32 / 16x16 / 8x8 grids
        q = spikes(npz, "stage1.0.tssa.q_lif")
        hidden = spikes(npz, "stage3.0.mlp.mlp1_lif")
        return {
            "stage1.0.tssa.q_sum": (32 * 32 * 16, q.sum() / b),
            "stage3.0.mlp.mlp2_conv": (
                64 * 256 * 64,
                hidden.mean() * t * 64 * 256 * 64,
            ),
            "head": (64 * 10, "real"),
        }
    # sdt_v2_small: widths 8-8-16-16 on 64x64; stage 3 on a 4x4 grid with 16 channels.
    s = spikes(npz, "block3.0.attn.head_lif")
    return {
        "block3.0.attn.q_conv.0": (16 * 9 * 16 * 16, s.mean() * t * 16 * 9 * 16 * 16),
        "downsample1_1.encode_conv": (32 * 32 * 49 * 3 * 4, "real"),
        "ConvBlock1_1.0.Conv.pwconv2": (32 * 32 * 8 * 4, "real"),
    }


@pytest.mark.parametrize("name", sorted(GIVEN))
def test_energy_counts_match_hand_computed_values(name):
    model, npz, config = fixture_model(name)
    images = images_of(npz)
    t, b = config["T"], len(images)
    report = energy_report(model, images)
    rows = {row["name"]: row for row in report.layers}
    for layer, (macs, sops) in hand_counts(name, npz, t, b).items():
        row = rows[layer]
        assert row["macs"] == macs, layer
        if sops == "real":  # MACs at every step, or once on a time-averaged input
            assert row["input"] == "real" and row["sops"] == 0, layer
            assert row["mac_ops"] == macs * row["timesteps"], layer
        else:
            assert row["sops"] == pytest.approx(sops, rel=1e-9), layer
            assert row["mac_ops"] == 0 and row["input"] == "spikes", layer
    assert report.firing_rates == pytest.approx(firing_rates(model, images), abs=1e-9)
    total = (
        sum(r["sops"] for r in report.layers) * 0.9e-12
        + sum(r["mac_ops"] for r in report.layers) * 4.6e-12
    )
    assert report.total_mj == pytest.approx(total * 1e3)
    assert counting_rules(model, {}).notes in report.conventions


# Large: the fixture tests above already run the report on every backend; this
# one adds the zoo's tiny presets (eager JAX takes minutes for the three).
@pytest.mark.large
@pytest.mark.parametrize("preset", TINY)
def test_energy_report_runs_on_each_tiny_preset(preset):
    model = presets.task_class(preset).from_preset(preset, load_weights=False)
    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(0).standard_normal((2, *shape)).astype("float32")
    report = energy_report(model, images, batch_size=1)
    assert report.num_images == 2
    assert {row["input"] for row in report.layers} <= {"real", "spikes", "counts"}
    first = report.layers[0]
    assert (
        first["input"] == "real"
        and first["mac_ops"] == first["macs"] * report.num_timesteps
    )
    assert report.total_mj > 0 and report.ann_macs > 0


def test_rules_that_do_not_fit_the_model_are_refused(monkeypatch):
    """The SDT encoding conv sees real pixels: rules that call it a spike input fail."""
    import dataclasses

    from keras_spikformer.analysis import energy

    model, npz, _ = fixture_model("sdt_v1_small")
    wrong = dataclasses.replace(counting_rules(model, {}), encoding="none")
    monkeypatch.setattr(energy, "counting_rules", lambda *args: wrong)
    with pytest.raises(ValueError, match="patch_embed.proj_conv receives spikes"):
        energy_report(model, images_of(npz))
