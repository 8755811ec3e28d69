"""TimmLamb: timm's Lamb step for step, and the recipes that select it."""

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_spikformer.training.lamb import TimmLamb
from keras_spikformer.training.recipe import Recipe

STEPS = Path(__file__).parent / "data" / "timm_lamb_steps.npz"


@pytest.mark.parametrize("trust_clip", [False, True])
def test_four_steps_equal_timms(trust_clip):
    # tests/data/timm_lamb_steps.md: timm 1.0.31's Lamb on the same values.
    data = np.load(STEPS)
    kernel = keras.Variable(data["w0"], name="kernel")
    bias = keras.Variable(data["b0"], name="bias")
    optimizer = TimmLamb(learning_rate=0.01, weight_decay=0.05, trust_clip=trust_clip)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    for gw, gb in zip(data["gw"], data["gb"], strict=True):
        grads = [keras.ops.convert_to_tensor(gw), keras.ops.convert_to_tensor(gb)]
        optimizer.apply_gradients(zip(grads, [kernel, bias], strict=True))
    suffix = "true" if trust_clip else "false"
    np.testing.assert_allclose(kernel.numpy(), data[f"w_{suffix}"], atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), data[f"b_{suffix}"], atol=1e-6)
    # Keras' own Lamb takes other steps (trust ratio on the bias, decay outside).
    other = keras.Variable(data["b0"], name="bias")
    keras_lamb = keras.optimizers.Lamb(learning_rate=0.01, epsilon=1e-6)
    for gb in data["gb"]:
        keras_lamb.apply_gradients([(keras.ops.convert_to_tensor(gb), other)])
    assert np.abs(other.numpy() - data[f"b_{suffix}"]).max() > 1e-3


def test_config_round_trip_and_bad_decay():
    optimizer = TimmLamb(learning_rate=0.002, weight_decay=0.05, trust_clip=True)
    again = TimmLamb.from_config(optimizer.get_config())
    assert (again.lamb_weight_decay, again.trust_clip, again.epsilon) == (
        0.05,
        True,
        1e-6,
    )
    assert again.weight_decay is None  # no second, decoupled decay
    with pytest.raises(ValueError, match="weight_decay"):
        TimmLamb(weight_decay=-1.0)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "preset, trust_clip",
    [("meta_spikeformer_55m_imagenet", True), ("sdt_8_768_imagenet", False)],
)
def test_recipes_select_timm_lamb(preset, trust_clip):
    recipe = Recipe.from_preset(preset)
    optimizer = recipe.make_optimizer(steps_per_epoch=10)
    assert isinstance(optimizer, TimmLamb) and optimizer.trust_clip is trust_clip
    assert optimizer.lamb_weight_decay == recipe.weight_decay
    assert "LAMB (timm" in recipe.describe()
