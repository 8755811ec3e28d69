"""`remat=True`: each stem stage and block recomputed in backprop, same training step."""

import keras
import numpy as np
import pytest

from keras_spikformer import Spikformer
from keras_spikformer.layers import SpikformerBlock
from keras_spikformer.layers.remat import check_remat
from keras_spikformer.models.spikformer.spikformer_backbone import SpikformerBackbone
from keras_spikformer.models.spikformer.spikformer_layers import SpikingPatchSplitting

PRESET = "spikformer_tiny_digits"  # 16x16x1, T=2, one block of width 64

# Every backend runs these in the quick loop and in CI (JAX: 30 s on a quiet
# 2-core Intel Xeon with AVX-512, 2026-12-07, most of it the XLA compilations
# of the two train steps); the JAX remat gradients are also checked against the
# reference fixtures in tests/test_reference_exactness.py.


def preset_model(remat):
    return Spikformer.from_preset(
        PRESET, load_weights=False, remat=remat, preprocessor=None
    )


def frames_model(remat):
    """Event frames `[batch, 2, 8, 8, 2]`: the stem's first stage runs T times."""
    backbone = SpikformerBackbone(
        image_shape=(8, 8, 2), patch_size=4, hidden_dim=16, num_layers=1,
        num_heads=2, num_timesteps=2, encoding="frames", remat=remat,
    )  # fmt: skip
    return Spikformer(backbone, num_classes=3)


def build(remat, make=preset_model):
    keras.utils.set_random_seed(0)
    model = make(remat)
    # SGD with learning rate 1: the step subtracts the gradient itself.
    model.compile(
        optimizer=keras.optimizers.SGD(1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # XLA where the step runs under it anyway (JAX); TensorFlow's graph
        # mode runs `tf.recompute_grad` too, without the compile time.
        jit_compile=keras.backend.backend() == "jax",
    )
    return model


def batch(model):
    rng = np.random.default_rng(0)
    shape = (8,) + tuple(model.inputs[0].shape[1:])
    images = rng.uniform(0.0, 4.0, size=shape).astype("float32")
    return images, rng.integers(0, model.num_classes, 8)


def one_step(remat, make=preset_model):
    """Loss, gradients and moving statistics of one training step."""
    model = build(remat, make)
    images, labels = batch(model)
    before = [np.array(v) for v in model.trainable_variables]
    loss = float(model.train_on_batch(images, labels, return_dict=True)["loss"])
    after = [np.array(v) for v in model.trainable_variables]
    grads = [b - a for b, a in zip(before, after, strict=True)]
    stats = {
        v.path: np.array(v) for v in model.non_trainable_variables if "moving" in v.path
    }
    return model, loss, grads, stats


@pytest.fixture(scope="module")
def plain_and_remat():
    return one_step(False), one_step(True)


def test_remat_is_on_in_the_stem_and_every_block(plain_and_remat):
    (plain, *_), (remat, *_) = plain_and_remat
    units = (SpikformerBlock, SpikingPatchSplitting)
    units = [layer for layer in remat.backbone.layers if isinstance(layer, units)]
    assert len(units) == 1 + remat.backbone.num_layers
    assert all(unit.remat for unit in units)
    assert not any(getattr(layer, "remat", False) for layer in plain.backbone.layers)


def assert_same_loss_and_gradients(plain, remat):
    (_, loss, grads, _), (_, remat_loss, remat_grads, _) = plain, remat
    np.testing.assert_allclose(remat_loss, loss, rtol=1e-5)
    assert any(np.abs(g).max() > 0 for g in grads)
    for g, r in zip(grads, remat_grads, strict=True):
        # 1e-5 of the tensor's scale, plus the float32 rounding of `w - g` for
        # weights up to ~1 (biases before a batch norm have a zero gradient).
        np.testing.assert_allclose(r, g, rtol=0, atol=1e-5 * np.abs(g).max() + 2e-7)


def assert_same_moving_statistics(plain, remat):
    (_, _, _, stats), (_, _, _, remat_stats) = plain, remat
    assert stats.keys() == remat_stats.keys()
    # One update moves the means away from 0 and the variances away from 1;
    # a second one would move them further than the plain step's.
    for unit in ("stage_0", "stage_3", "rpe", "block_0"):
        means = [path for path in stats if unit in path and "moving_mean" in path]
        assert means and np.abs(stats[means[0]]).max() > 1e-3, unit
    for path, value in stats.items():
        np.testing.assert_allclose(remat_stats[path], value, atol=1e-6, err_msg=path)


def test_remat_step_has_the_plain_loss_and_gradients(plain_and_remat):
    assert_same_loss_and_gradients(*plain_and_remat)


def test_remat_step_updates_moving_statistics_once(plain_and_remat):
    assert_same_moving_statistics(*plain_and_remat)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="CI time: 13 s of graph tracing on TensorFlow; the frames path differs "
    "from the preset's only in the stem's first stage, the same on every backend, "
    "and runs in CI's torch pass (~4 s)",
)
def test_remat_on_event_frames_is_the_plain_step():
    plain, remat = one_step(False, frames_model), one_step(True, frames_model)
    assert remat[0].backbone.get_layer("patch_embed").remat
    assert_same_loss_and_gradients(plain, remat)
    assert_same_moving_statistics(plain, remat)


def test_remat_model_saves_and_loads(plain_and_remat, tmp_path):
    _, (model, *_) = plain_and_remat
    path = str(tmp_path / "remat.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.remat is True
    images, _ = batch(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
        atol=1e-5,
    )


@pytest.mark.backend_independent
def test_remat_accepts_bools_and_names_the_fix():
    assert check_remat(True) is True
    assert check_remat(None) is False
    with pytest.raises(ValueError, match="True or False"):
        SpikformerBackbone(
            image_shape=(16, 16, 1), patch_size=4, hidden_dim=32, num_layers=1,
            num_heads=2, num_timesteps=2, remat="blocks",
        )  # fmt: skip
