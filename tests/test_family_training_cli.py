"""`keras-spikformer train --preset <tiny preset>` end to end for QKFormer and Meta-SpikeFormer.

The Spike-driven Transformer's run is in test_spike_driven_transformer_training.py.
"""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import DATA

from keras_spikformer import presets
from keras_spikformer.cli.main import main as cli
from keras_spikformer.models.image_classifier import ImageClassifier


@pytest.fixture
def eager_fit(monkeypatch):
    """Runs `fit` eagerly: tracing these models' train steps (XLA or not) takes
    minutes on a small CPU; XLA `fit` of the tiny presets is in the model tests."""
    original = ImageClassifier.compile

    def compile_eagerly(self, *args, **kwargs):
        kwargs.update(jit_compile=False, run_eagerly=True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ImageClassifier, "compile", compile_eagerly)


def train_tiny(preset, tmp_path, capsys, extra=()):
    out = tmp_path / "run"
    args = ["train", "--preset", preset, "--dataset", "cifar10"]
    args += ["--data-dir", str(tmp_path), "--output", str(out)]
    args += ["--epochs", "1", "--batch-size", "8", *extra]
    with tfds.testing.mock_data(num_examples=16):
        assert cli(args) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["num_train"] == 16
    assert np.isfinite(metrics["test_loss"]) and 0 <= metrics["test_accuracy"] <= 1
    trained = presets.task_class(preset).from_preset(str(out / "preset"))
    assert trained.num_classes == 10
    return trained


@pytest.mark.large
def test_cli_trains_the_tiny_qkformer(tmp_path, capsys, eager_fit):
    trained = train_tiny("qkformer_tiny_cifar", tmp_path, capsys)
    assert type(trained.backbone).__name__ == "QKFormerBackbone"


@pytest.mark.large
def test_cli_fine_tunes_a_converted_meta_spikeformer(tmp_path, capsys, eager_fit):
    # The reference fixture's checkpoint converted by the CLI, then its weights
    # trained as the tiny preset (attention scale 1.0, the fixture's is 0.125)
    # on CIFAR-sized images (upscaled to the preset's 64x64).
    converted = tmp_path / "converted"
    convert = [
        "convert",
        str(DATA / "sdt_v2_small.pth.tar"),
        "--output",
        str(converted),
    ]
    convert += ["--preset", "meta_spikeformer_tiny_imagenet", "--no-progress"]
    assert cli(convert) == 0
    trained = train_tiny(
        "meta_spikeformer_tiny_imagenet",
        tmp_path,
        capsys,
        ["--weights", str(converted)],
    )
    assert type(trained.backbone).__name__ == "MetaSpikeFormerBackbone"
