"""Smoke runs of the keras-io style tutorials in `examples/`.

Each tutorial's `main([... "--smoke"])` runs in-process on tiny presets and
offline data (TFDS mock data, synthetic event files, the digits) and must
write what it says: metrics and a preset directory that reloads.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest

from keras_spikformer import Spikformer
from keras_spikformer.training.recipe import Recipe

# End-to-end tutorial scripts run once (TensorFlow pass); the models they use
# are tested on every backend by the model tests.
pytestmark = [pytest.mark.backend_independent, pytest.mark.large]


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_tutorial(name):
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


def check_preset(directory, num_classes):
    assert (directory / "config.json").is_file()
    model = Spikformer.from_preset(str(directory))
    assert model.num_classes == num_classes
    return model


def read_metrics(output):
    return json.loads((output / "metrics.json").read_text())


def test_cifar10_paper_recipe_smoke(tmp_path, capsys):
    metrics = load_tutorial("cifar10_paper_recipe").main(
        ["--smoke", "--output", str(tmp_path)]
    )
    assert metrics["preset"] == "spikformer_tiny_cifar"
    assert metrics["epochs"] == 1 and metrics["batch_size"] == 8
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert read_metrics(tmp_path) == metrics
    check_preset(tmp_path / "preset", 10)
    # The saved recipe is the shortened one: a 1-epoch cosine, no warm-up.
    recipe = Recipe.from_preset(str(tmp_path / "preset"))
    assert (recipe.epochs, recipe.warmup_epochs, recipe.cooldown_epochs) == (1, 0, 0)
    assert "test accuracy:" in capsys.readouterr().out


def test_cifar10_shorten_keeps_the_recipe_shape():
    tutorial = load_tutorial("cifar10_paper_recipe")
    recipe = Recipe.from_preset("spikformer_4_384_cifar10")
    assert tutorial.shorten(recipe, None) == (recipe, 200)
    short, mixup_off = tutorial.shorten(recipe, 31)
    assert short.total_epochs() == 31
    assert (short.warmup_epochs, short.cooldown_epochs, mixup_off) == (2, 1, 20)


def test_imagenet_tfds_smoke(tmp_path, capsys):
    metrics = load_tutorial("imagenet_tfds").main(
        ["--smoke", "--output", str(tmp_path)]
    )
    assert metrics["preset"] == "spikformer_tiny_imagenet"
    assert metrics["dtype"] == "mixed_bfloat16"
    assert 0.0 <= metrics["top1"] <= 1.0
    assert metrics["energy_mj_per_image"] > 0
    assert read_metrics(tmp_path) == metrics
    # ImageNet's 1000 classes replace the tiny preset's 10.
    model = check_preset(tmp_path / "preset", 1000)
    assert model.get_layer("head").dtype_policy.name == "mixed_bfloat16"
    assert "energy per image:" in capsys.readouterr().out


def test_neuromorphic_dvs_smoke(tmp_path, capsys):
    metrics = load_tutorial("neuromorphic_dvs").main(
        ["--smoke", "--output", str(tmp_path)]
    )
    assert metrics["preset"] == "spikformer_tiny_dvs"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert read_metrics(tmp_path) == metrics
    check_preset(tmp_path / "preset", 10)
    # 10 synthetic recordings per class, each integrated once into the cache.
    assert len(list((tmp_path / "cifar10dvs").glob("*/*.aedat"))) == 100
    assert len(list((tmp_path / "frames").rglob("*.npz"))) == 100
    out = capsys.readouterr().out
    assert "events per frame [16, 16, 16, 16]" in out  # 64 events, T=4
    assert "90 training and 10 test recordings, T=4" in out


def test_finetune_new_head_smoke(tmp_path, capsys):
    results = load_tutorial("finetune_new_head").main(
        ["--smoke", "--output", str(tmp_path)]
    )
    assert list(results) == ["new head", "head trained", "fine-tuned"]
    assert all(0.0 <= acc <= 1.0 for acc in results.values())
    # The pretrained backbone makes even one epoch of head training useful.
    assert results["head trained"] > 0.5
    model = check_preset(tmp_path / "digit_pairs", 5)
    assert model.preset_metadata["test_accuracy"] == pytest.approx(
        results["fine-tuned"]
    )
    out = capsys.readouterr().out
    assert "freshly initialised: ['head/kernel', 'head/bias']" in out
    assert "same predictions: True" in out
