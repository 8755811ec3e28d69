"""`keras-spikformer train --preset e_spikeformer_tiny_imagenet` end to end (large tier)."""

import pytest
from test_family_training_cli import eager_fit, train_tiny  # noqa: F401 (fixture)

from keras_spikformer.training.recipe import Recipe


@pytest.mark.large
def test_cli_trains_the_tiny_e_spikeformer(tmp_path, capsys, eager_fit):  # noqa: F811
    trained = train_tiny("e_spikeformer_tiny_imagenet", tmp_path, capsys)
    assert type(trained.backbone).__name__ == "ESpikeFormerBaseBackbone"
    assert trained.backbone.rounding == "half_even"


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "preset, optimizer, layer_decay, mixup",
    [
        ("e_spikeformer_10m_imagenet", "lamb", 1.0, 0.0),
        ("e_spikeformer_171m_1x8_imagenet", "lamb", 0.75, 0.8),
    ],
)
def test_recipes_follow_the_reference_scripts(preset, optimizer, layer_decay, mixup):
    recipe = Recipe.from_preset(preset)
    assert recipe.optimizer == optimizer and recipe.label_smoothing == 0.1
    assert recipe.extras["layer_decay"] == layer_decay
    assert recipe.augment["mixup_alpha"] == mixup
