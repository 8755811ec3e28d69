"""Spike-driven Transformer V1 training: LAMB and TET recipes, `train --preset sdt_...`."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer.training import Recipe
from keras_spikformer.training.lamb import TimmLamb
from keras_spikformer.training.tet_loss import TETLoss


def test_imagenet_recipes_use_lamb():
    recipe = Recipe.from_preset("sdt_8_768_imagenet")
    optimizer = recipe.make_optimizer(steps_per_epoch=10)
    assert isinstance(optimizer, TimmLamb) and not optimizer.trust_clip
    assert optimizer.global_clipnorm == 1.0 and optimizer.lamb_weight_decay == 0.01
    assert "LAMB" in recipe.describe()
    assert isinstance(Recipe.from_preset("sdt_2_512_cifar10").make_optimizer(10),
                      keras.optimizers.AdamW)  # fmt: skip


def test_cifar10dvs_recipe_uses_the_tet_loss():
    loss = Recipe.from_preset("sdt_2_256_cifar10dvs").make_loss()
    assert isinstance(loss, TETLoss) and loss.lamb == 0.001 and loss.means == 1.0
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 5)).astype("float32")  # [batch, time, classes]
    labels = np.eye(5, dtype="float32")[[0, 3, 4]]
    smooth = labels * 0.9 + 0.1 / 5
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    cross_entropy = -(smooth[:, None] * log_p).sum(-1).mean()  # mean over t and batch
    expected = 0.999 * cross_entropy + 0.001 * np.mean((logits - 1.0) ** 2)
    value = float(ops.convert_to_numpy(loss(labels, logits)))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="per_step_logits=True"):
        loss(labels, logits.mean(1))


def test_unknown_optimizer_and_loss_are_refused():
    base = {
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "epochs": 1,
        "global_batch_size": 8,
    }
    with pytest.raises(ValueError, match="'adamw' and 'lamb'"):
        Recipe.from_dict({**base, "optimizer": "sgd"})
    with pytest.raises(ValueError, match="tet"):
        Recipe.from_dict({**base, "loss": {"name": "focal"}})


@pytest.mark.large
def test_train_command_runs_the_tiny_preset(tmp_path):
    import tensorflow_datasets as tfds

    from keras_spikformer.training import train

    with tfds.testing.mock_data(num_examples=16):
        metrics = train(
            "sdt_tiny_cifar", "cifar10", tmp_path / "run", data_dir=tmp_path,
            epochs=1, batch_size=8, verbose=0,
        )  # fmt: skip
    assert metrics["num_train"] == 16 and np.isfinite(metrics["test_loss"])


@pytest.mark.large
def test_tet_recipe_trains_end_to_end_with_per_step_logits(tmp_path):
    """A TET recipe builds the classifier with per-step logits and measures the
    accuracy of their time average."""
    import json
    import shutil

    import tensorflow_datasets as tfds

    from keras_spikformer import SpikeDrivenTransformer
    from keras_spikformer.presets import zoo_dir
    from keras_spikformer.training import train

    preset = tmp_path / "sdt_tet"
    shutil.copytree(zoo_dir() / "sdt_tiny_cifar", preset)
    recipe = json.loads((preset / "recipe.json").read_text())
    recipe["loss"] = {"name": "tet", "lamb": 0.001, "means": 1.0}
    (preset / "recipe.json").write_text(json.dumps(recipe))
    with tfds.testing.mock_data(num_examples=16):
        metrics = train(
            str(preset), "cifar10", tmp_path / "run", data_dir=tmp_path,
            epochs=1, batch_size=8, verbose=0,
        )  # fmt: skip
    assert np.isfinite(metrics["test_loss"]) and np.isfinite(metrics["test_accuracy"])
    trained = SpikeDrivenTransformer.from_preset(str(tmp_path / "run" / "preset"))
    assert trained.per_step_logits and trained.output.shape[1:] == (2, 10)
