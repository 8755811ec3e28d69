"""Firing rates of every successor family equal the reference fixtures' spike means."""

import pytest
from conftest import images_of, load_fixture, state_dict_of

from keras_spikformer import preset_builder
from keras_spikformer.analysis import firing_rates
from keras_spikformer.convert import load_reference_weights
from keras_spikformer.convert.families import family_of_state_dict

# What each fixture was built with that the shapes cannot tell (their README).
GIVEN = {
    "sdt_v1_small": {},
    "qkformer_small": {},
    "sdt_v2_small": {"num_heads": 4, "image_shape": (64, 64, 3)},
}


@pytest.mark.parametrize("name", sorted(GIVEN))
def test_firing_rates_match_reference_spikes(name):
    npz, config = load_fixture(name)
    state_dict = state_dict_of(npz)
    family, task_cls = family_of_state_dict(state_dict)
    backbone_config, num_classes, _ = family.infer_architecture(
        state_dict, num_timesteps=config["T"], **GIVEN[name]
    )
    model = preset_builder.build_task(task_cls, {**backbone_config, "num_classes": num_classes})
    assert load_reference_weights(model, state_dict).ok
    rates = firing_rates(model, images_of(npz))
    reference = {k[len("lif/") :]: float(npz[k].mean()) for k in npz.files if k.startswith("lif/")}
    unused = set(config.get("lif_unused", []))
    assert set(rates) - unused == set(reference), set(rates) ^ set(reference)
    for layer, rate in reference.items():
        assert rates[layer] == pytest.approx(rate, abs=1e-7), layer
