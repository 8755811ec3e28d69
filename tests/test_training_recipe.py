"""Training recipe: schedule, Recipe, optimizer, loss and augmentation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spikformer.data.augment import (
    make_eval_preprocess,
    make_event_train_augment,
    make_train_augment,
)
from keras_spikformer.training.callbacks import MixupOffCallback
from keras_spikformer.training.recipe import Recipe
from keras_spikformer.training.schedules import WarmupCosineDecay

CIFAR = "spikformer_4_384_cifar10"
IMAGENET = "spikformer_8_384_imagenet"
DVS = "spikformer_2_256_cifar10dvs"


def _batch(n=8, size=32, seed=0):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (n, size, size, 3)).astype("uint8")
    labels = np.arange(n) % 10
    return images, labels


def _first(fn, images, labels):
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(images))
    x, y = next(iter(ds.map(fn)))
    return x.numpy(), y.numpy()


# ------------------------------------------------------------------ schedule
def _timm_lr(step, peak, floor, warm_lr, warm_steps, decay_steps):
    if step < warm_steps:
        return warm_lr + step * (peak - warm_lr) / warm_steps
    if step >= decay_steps:
        return floor
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * step / decay_steps))


def test_schedule_matches_formula():
    kw = dict(
        learning_rate=5e-4,
        decay_steps=3000,
        warmup_steps=200,
        warmup_learning_rate=1e-6,
        min_learning_rate=1e-5,
    )
    schedule = WarmupCosineDecay(**kw)
    steps = [0, 100, 199, 200, 1500, 2999, 3000, 3100, 10_000]
    for step in steps:
        expected = _timm_lr(step, 5e-4, 1e-5, 1e-6, 200, 3000)
        got = float(keras.ops.convert_to_numpy(schedule(step)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=f"step {step}")
    # Warm-up start, middle and end; cosine middle; floor in the cooldown.
    assert float(schedule(0)) == pytest.approx(1e-6)
    assert float(schedule(100)) == pytest.approx((1e-6 + 5e-4) / 2, rel=1e-5)
    assert float(schedule(1500)) == pytest.approx((5e-4 + 1e-5) / 2, rel=1e-5)
    assert float(schedule(3100)) == pytest.approx(1e-5, rel=1e-6)

    prefixed = WarmupCosineDecay(**kw, warmup_prefix=True)
    assert float(prefixed(200)) == pytest.approx(5e-4, rel=1e-6)
    assert float(prefixed(1700)) == pytest.approx((5e-4 + 1e-5) / 2, rel=1e-5)
    assert prefixed.total_steps == 3200


def test_schedule_config_round_trip():
    schedule = WarmupCosineDecay(1e-3, 960, 100, 1e-5, 1e-5, name="s")
    config = schedule.get_config()
    clone = WarmupCosineDecay.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert isinstance(restored, WarmupCosineDecay)
    assert restored.get_config() == config
    with pytest.raises(ValueError, match="decay_steps"):
        WarmupCosineDecay(1e-3, 0)


# -------------------------------------------------------------------- recipe
@pytest.mark.parametrize(
    "preset, lr, wd, epochs, batch, warm_lr",
    [
        (CIFAR, 5e-4, 0.06, 300, 128, 1e-5),
        (IMAGENET, 5e-4, 0.05, 300, 192, 1e-6),
        (DVS, 1e-3, 0.06, 96, 16, 1e-5),
    ],
)
def test_recipe_from_preset_and_optimizer(preset, lr, wd, epochs, batch, warm_lr):
    recipe = Recipe.from_preset(preset)
    assert recipe.learning_rate == lr
    assert recipe.epochs == epochs
    assert recipe.global_batch_size == batch
    assert recipe.total_epochs() == epochs + 10
    assert recipe.scaling_rule() == "none"
    steps = 7
    optimizer = recipe.make_optimizer(steps_per_epoch=steps)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(wd)
    assert optimizer.epsilon == pytest.approx(1e-8)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, WarmupCosineDecay)
    assert schedule.decay_steps == epochs * steps
    assert schedule.warmup_steps == recipe.warmup_epochs * steps
    assert float(schedule(0)) == pytest.approx(warm_lr)
    assert float(schedule((epochs + 5) * steps)) == pytest.approx(1e-5)
    # Overrides.
    short = recipe.replace(epochs=10)
    assert short.make_schedule(steps).decay_steps == 10 * steps
    assert recipe.make_schedule(steps, epochs=4).decay_steps == 4 * steps
    assert recipe.to_dict()["epochs"] == epochs
    assert "cosine" in recipe.describe()


def test_recipe_sections_and_json(tmp_path):
    cifar = Recipe.from_preset(CIFAR)
    assert cifar.augment["rand_augment"]["num_ops"] == 1
    assert cifar.augment["mixup_off_epoch"] == 200
    imagenet = Recipe.from_preset(IMAGENET)
    assert imagenet.eval["crop_ratio"] == 1.0
    assert imagenet.augment["cutmix_alpha"] == 1.0
    assert Recipe.from_preset(DVS).frames["num_frames"] == 16
    path = tmp_path / "recipe.json"
    path.write_text(
        '{"learning_rate": 0.1, "weight_decay": 0, "epochs": 2, '
        '"global_batch_size": 4, "something_new": 1}'
    )
    recipe = Recipe.from_json(path)
    assert recipe.extras == {"something_new": 1}
    with pytest.raises(FileNotFoundError, match="recipe"):
        Recipe.from_json(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="Unknown preset"):
        Recipe.from_preset("spikformer_nope")
    with pytest.raises(ValueError, match="global_batch_size"):
        Recipe.from_dict({"learning_rate": 1, "weight_decay": 0, "epochs": 1})


def test_make_loss():
    loss = Recipe.from_preset(CIFAR).make_loss()
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    config = loss.get_config()
    assert config["from_logits"] and config["label_smoothing"] == pytest.approx(0.1)


def test_lr_scaling_rule():
    recipe = Recipe.from_preset(CIFAR)
    assert recipe.scaled_learning_rate(256) == pytest.approx(5e-4)  # "none"
    assert "lr kept at" in recipe.describe(global_batch_size=256)
    linear = recipe.replace(lr_scaling_rule="linear: scale with the batch")
    assert linear.scaled_learning_rate(256) == pytest.approx(1e-3)
    assert linear.scaled_learning_rate(64) == pytest.approx(2.5e-4)
    assert linear.make_schedule(10, global_batch_size=256).learning_rate == (
        pytest.approx(1e-3)
    )
    assert "= 0.001" in linear.describe(global_batch_size=256)
    with pytest.raises(ValueError, match="lr_scaling_rule"):
        recipe.replace(lr_scaling_rule="sqrt")


def test_weight_decay_excludes_bias_and_batch_norm():
    recipe = Recipe.from_preset(CIFAR).replace(warmup_epochs=0, learning_rate=0.5)
    inputs = keras.Input((4,))
    outputs = keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    for v in model.trainable_variables:
        v.assign(np.ones(v.shape, "float32"))
    optimizer = recipe.make_optimizer(steps_per_epoch=10, model=model)
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    decayed = 1.0 - 0.5 * 0.06  # AdamW: var -= lr * wd * var; Adam term is 0
    for v in model.trainable_variables:
        value = keras.ops.convert_to_numpy(v)
        expected = decayed if v.name == "kernel" else 1.0
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=v.path)


# -------------------------------------------------------------- augmentation
def _assert_mixed_labels(labels, classes, num_classes=10):
    assert labels.shape == (len(classes), num_classes) and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert labels.min() >= 0.0 and labels.max() <= 1.0 + 1e-6
    for row in labels:
        support = np.flatnonzero(row > 1e-6)
        assert len(support) <= 2, row  # a convex combination of two one-hots
        assert set(support) <= set(classes)


def test_train_augment_cifar_mixup_and_switch():
    recipe = Recipe.from_preset(CIFAR)
    images, labels = _batch()
    augment = make_train_augment(recipe, 32, 10, seed=3)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8).map(augment)
    x, y = (t.numpy() for t in next(iter(ds)))
    assert x.shape == (8, 32, 32, 3) and x.dtype == np.float32
    assert np.isfinite(x).all()
    mean = np.array(recipe.normalize["mean"]) * 255
    std = np.array(recipe.normalize["std"]) * 255
    assert (x >= (0 - mean) / std - 1e-4).all() and (
        x <= (255 - mean) / std + 1e-4
    ).all()
    _assert_mixed_labels(y, labels)
    assert (y.max(axis=1) < 1.0).any()  # mixing happened (mixup_prob 1)

    # Before normalisation the pipeline stays within [0, 255].
    raw = augment.rand_augment(augment.geometry(tf.constant(images, tf.float32)))
    assert 0.0 <= float(tf.reduce_min(raw)) and float(tf.reduce_max(raw)) <= 255.0

    # The switch: MixupOffCallback flips the variable the dataset reads.
    callback = MixupOffCallback(augment)
    assert callback.off_epoch == 200
    callback.on_epoch_begin(199)
    assert bool(augment.mixup_enabled.numpy())
    callback.on_epoch_begin(200)
    assert not bool(augment.mixup_enabled.numpy())
    for _ in range(2):
        _, y = next(iter(ds))
        np.testing.assert_array_equal(y.numpy(), np.eye(10, dtype="float32")[labels])
    callback.on_epoch_begin(0)  # resuming earlier turns it back on
    _, y = next(iter(ds))
    assert (y.numpy().max(axis=1) < 1.0).any()


def test_train_augment_imagenet_cutmix_and_mixup():
    recipe = Recipe.from_preset(IMAGENET)
    images, labels = _batch(size=40)
    augment = make_train_augment(recipe, 32, 10, seed=0)
    assert augment.rand_augment.num_ops == 2
    for _ in range(2):
        x, y = _first(augment, images, labels)
        assert x.shape == (8, 32, 32, 3) and np.isfinite(x).all()
        _assert_mixed_labels(y, labels)
    cutmix_only = recipe.replace(augment={**recipe.augment, "mixup_alpha": 0.0})
    augment = make_train_augment(cutmix_only, 40, 10, seed=1)
    augment.rand_augment = None
    augment.erasing = None
    x, y = _first(augment, images, labels)
    _assert_mixed_labels(y, labels)


def test_eval_preprocess_is_deterministic():
    images, labels = _batch(size=40)
    recipe = Recipe.from_preset(IMAGENET)
    preprocess = make_eval_preprocess(recipe, 32, 10)
    x1, y1 = _first(preprocess, images, labels)
    x2, _ = _first(preprocess, images, labels)
    np.testing.assert_array_equal(x1, x2)
    assert x1.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(y1, np.eye(10, dtype="float32")[labels])
    # At the model's size: normalisation only.
    cifar = Recipe.from_preset(CIFAR)
    images, labels = _batch()
    x, _ = _first(make_eval_preprocess(cifar, 32, 10), images, labels)
    mean, std = np.array(cifar.normalize["mean"]), np.array(cifar.normalize["std"])
    np.testing.assert_allclose(x, (images / 255.0 - mean) / std, atol=1e-5)


def test_event_augment():
    recipe = Recipe.from_preset(DVS)
    rng = np.random.RandomState(0)
    frames = rng.poisson(1.0, (16, 4, 64, 64, 2)).astype("float32")
    labels = np.arange(16) % 10
    no_mix = recipe.replace(augment={**recipe.augment, "mixup_alpha": 0.0})
    augment = make_event_train_augment(no_mix, 10, seed=0)
    x, y = _first(augment, frames, labels)
    assert x.shape == frames.shape and x.dtype == np.float32
    assert x.min() >= 0.0
    np.testing.assert_array_equal(x, np.round(x))  # nearest resampling: counts
    np.testing.assert_array_equal(y, np.eye(10, dtype="float32")[labels])
    # Counts survive up to borders, cutout (<= 11% of the area) and nearest
    # duplication: with +-5 px shifts, +-30 deg rotations and +-0.3 shear on a
    # 64x64 frame every sample keeps 70% to 105% of its events.
    ratio = x.sum(axis=(1, 2, 3, 4)) / frames.sum(axis=(1, 2, 3, 4))
    assert ((ratio > 0.7) & (ratio < 1.05)).all(), ratio
    assert (ratio < 0.999).any()  # something happened

    mixed = make_event_train_augment(recipe, 10, seed=0)
    mixed.mixup_prob = 1.0
    x, y = _first(mixed, frames, labels)
    assert x.shape == frames.shape and x.min() >= 0.0
    _assert_mixed_labels(y, labels)
    assert (y.max(axis=1) < 1.0).any()
    mixed.set_mixup_enabled(False)
    _, y = _first(mixed, frames, labels)
    np.testing.assert_array_equal(y, np.eye(10, dtype="float32")[labels])


def test_equalize_matches_pil_formula():
    from keras_spikformer.data.rand_augment import _equalize

    def pil_equalize(channel):  # PIL ImageOps.equalize, one channel
        hist = np.bincount(channel.ravel().astype(int), minlength=256)
        step = (hist.sum() - hist[np.flatnonzero(hist)[-1]]) // 255
        if step == 0:
            return channel
        lut = (np.concatenate([[0], np.cumsum(hist)[:-1]]) + step // 2) // step
        return np.minimum(lut, 255)[channel.astype(int)]

    x = np.random.RandomState(0).randint(0, 200, (2, 16, 16, 3)).astype("float32")
    x[1, ..., 2] = 7.0  # a flat channel stays as it is
    expected = np.stack(
        [np.stack([pil_equalize(x[b, ..., c]) for c in range(3)], -1) for b in range(2)]
    )
    np.testing.assert_array_equal(_equalize(tf.constant(x)).numpy(), expected)
