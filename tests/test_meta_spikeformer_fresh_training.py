"""A freshly initialised tiny Meta-SpikeFormer trains: independent kernels, firing attention, finite steps.

With the reference's attention scale (0.125) at the tiny preset's width (head
dim 4, 16 tokens) `Q (K^T V)` never reaches the attention threshold: the
attention neurons are silent, the three batch norms of the proj RepConv see a
constant input, each multiplies the gradient by `1 / sqrt(eps)` ~ 316, and
over eight blocks the gradients overflow to inf (NaN weights after LAMB's
global-norm clip). The tiny preset therefore uses `attention_scale=1.0`.
"""

import keras
import numpy as np
import pytest
from keras import ops
from sklearn.datasets import load_digits

from keras_spikformer.models.meta_spikeformer import MetaSpikeFormer
from keras_spikformer.neurons.recording import record_spikes
from keras_spikformer.training.recipe import Recipe

PRESET = "meta_spikeformer_tiny_imagenet"
MEAN = np.array([0.485, 0.456, 0.406], "float32")
STD = np.array([0.229, 0.224, 0.225], "float32")


def digits(count):
    """The first `count` scikit-learn digits as normalised 64x64 RGB images."""
    raw = load_digits()
    images = raw.images[:count, ..., None].astype("float32") / 16.0
    images = np.repeat(np.repeat(images, 8, axis=1), 8, axis=2)
    images = (np.repeat(images, 3, axis=-1) - MEAN) / STD
    return images, raw.target[:count].astype("int32")


def fresh_model():
    keras.utils.set_random_seed(0)
    model = MetaSpikeFormer.from_preset(PRESET, load_weights=False)
    model.apply_preprocessor = False
    return model


@pytest.mark.backend_independent
def test_fresh_kernels_are_drawn_independently():
    # One initializer instance per block used to give every q/k/v/proj RepConv
    # kernel of a block the same values.
    kernels = [
        ops.convert_to_numpy(v).tobytes()
        for v in fresh_model().trainable_variables
        if v.path.endswith("kernel")
    ]
    assert len(set(kernels)) == len(kernels)


# An eager forward of the 8-block preset takes ~90 s on JAX (TensorFlow ~9 s,
# torch ~7 s on a loaded 2-core CPU): large there.
@pytest.mark.large if keras.backend.backend() == "jax" else (lambda test: test)
def test_fresh_tiny_preset_attention_fires():
    model = fresh_model()
    with record_spikes() as record:
        model(digits(16)[0], training=True)
    rates = {
        layer.path: float(np.mean(ops.convert_to_numpy(spikes[-1])))
        for layer, spikes in record.items()
        if layer.path.endswith("attn_lif")
    }
    assert len(rates) == 8 and min(rates.values()) > 0, rates


@pytest.mark.large
def test_fresh_tiny_preset_trains_on_digits():
    model = fresh_model()
    x, y = digits(16)
    # The recipe's LAMB (timm's global-norm clip 1.0) without warm-up, at a
    # rate that moves this width within three steps; eager: tracing this
    # model's train step takes minutes on a small CPU.
    recipe = Recipe.from_preset(PRESET).replace(learning_rate=0.1, warmup_epochs=0)
    model.compile(
        optimizer=recipe.make_optimizer(steps_per_epoch=3, epochs=1, model=model),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    for variable in model.weights:
        assert np.all(np.isfinite(ops.convert_to_numpy(variable))), variable.path
    assert losses[-1] < losses[0] - 0.01, losses
