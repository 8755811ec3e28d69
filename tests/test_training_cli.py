"""`keras-spikformer train | evaluate`: outputs, resume, datasets and bad input."""

import json

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_spikformer import Spikformer
from keras_spikformer.cli.main import main as cli
from keras_spikformer.testing.synthetic_events import (
    write_synthetic_cifar10dvs,
    write_synthetic_dvsgesture,
)
from keras_spikformer.training.trainer import evaluate, train

QUICK = {"epochs": 2, "batch_size": 128, "verbose": 0}


class Interrupt(Exception):
    pass


class StopAfterEpoch(keras.callbacks.Callback):
    """Simulates a killed run: raises after epoch `epoch` was backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupt()


def _weights(run_dir):
    model = keras.saving.load_model(run_dir / "model.keras")
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_shipped_digits_preset_reproduces_its_recorded_accuracy():
    recorded = Spikformer.presets["spikformer_tiny_digits"]["weights"]["test_accuracy"]
    metrics = evaluate("spikformer_tiny_digits", "digits", verbose=0)
    assert metrics["num_test"] == 360
    assert abs(metrics["test_accuracy"] - recorded) <= 0.005


def test_cli_train_writes_model_preset_logs_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "spikformer_tiny_digits", "--dataset", "digits"]
    assert (
        cli(args + ["--output", str(out), "--epochs", "1", "--batch-size", "128"]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "test_loss", "epochs", "seconds"} <= set(metrics)
    assert metrics["epochs"] == 1 and 0 <= metrics["test_accuracy"] <= 1
    assert (out / "model.keras").is_file() and (out / "log.csv").is_file()
    assert not (out / "backup").exists()
    assert any((out / "tensorboard").rglob("*tfevents*"))
    restored = Spikformer.from_preset(str(out / "preset"))
    assert restored.num_classes == 10
    assert "test accuracy" in capsys.readouterr().out
    # A finished run is never overwritten.
    assert cli(args + ["--output", str(out)]) == 2
    assert "finished run" in capsys.readouterr().err


def test_resume_reaches_the_state_of_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    train("spikformer_tiny_digits", "digits", straight, **QUICK)

    resumed = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        train(
            "spikformer_tiny_digits",
            "digits",
            resumed,
            callbacks=[StopAfterEpoch(0)],
            **QUICK,
        )
    assert (resumed / "backup").is_dir() and not (resumed / "metrics.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train("spikformer_tiny_digits", "digits", resumed, **QUICK)
    metrics = train("spikformer_tiny_digits", "digits", resumed, resume=True, **QUICK)
    assert metrics["resumed_from_epoch"] == 1
    # Same seed, same per-epoch data order, restored optimizer state: the
    # same final weights (XLA on CPU is deterministic here).
    for a, b in zip(_weights(straight), _weights(resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    log = (resumed / "log.csv").read_text().strip().splitlines()
    assert len(log) == 1 + 2  # header + one row per epoch across both runs


def test_training_on_a_tfds_dataset_with_the_cifar_recipe(tmp_path):
    with tfds.testing.mock_data(num_examples=32):
        metrics = train(
            "spikformer_tiny_cifar", "cifar10", tmp_path / "run", data_dir=tmp_path,
            epochs=1, batch_size=16, verbose=0,
        )  # fmt: skip
    assert metrics["num_train"] == 32 and np.isfinite(metrics["test_loss"])


def test_training_on_event_data(tmp_path):
    write_synthetic_cifar10dvs(tmp_path / "dvs", num_per_class=10, num_events=64)
    metrics = train(
        "spikformer_tiny_dvs", "cifar10dvs", tmp_path / "run", data_dir=tmp_path / "dvs",
        cache_dir=tmp_path / "cache", epochs=1, batch_size=8, verbose=0,
    )  # fmt: skip
    assert (metrics["num_train"], metrics["num_test"]) == (90, 10)  # 90/10 per class
    assert np.isfinite(metrics["test_loss"])


def test_class_count_mismatch_offers_num_classes(tmp_path):
    write_synthetic_dvsgesture(tmp_path / "gesture")
    with pytest.raises(ValueError, match="--num-classes 11"):
        train(
            "spikformer_tiny_dvs", "dvsgesture", tmp_path / "run",
            data_dir=tmp_path / "gesture", cache_dir=tmp_path / "cache", **QUICK,
        )  # fmt: skip
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    "dataset, data_dir, error",
    [
        ("cifar10", None, "KERAS_SPIKFORMER_OFFLINE=1 forbids downloading"),
        ("cifar10", "a_file", "is not a directory"),
        ("folder", None, "needs --data-dir"),
        ("folder", "empty", "no class subfolders"),
        ("cifar10dvs", "empty", "CIFAR10-DVS is not in"),
    ],
)
def test_missing_or_empty_data(tmp_path, dataset, data_dir, error, capsys, monkeypatch):
    # Offline: a missing public dataset gives the error instead of a download.
    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("KERAS_SPIKFORMER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    args = ["train", "--preset", "spikformer_tiny_cifar", "--dataset", dataset]
    args += ["--output", str(tmp_path / "run")]
    if data_dir:
        args += ["--data-dir", str(tmp_path / data_dir)]
    assert cli(args) == 2
    assert error.lower() in capsys.readouterr().err.lower()
    assert not (tmp_path / "run").exists()


def test_resume_without_an_interrupted_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="no interrupted run"):
        train(
            "spikformer_tiny_digits", "digits", tmp_path / "run", resume=True, **QUICK
        )
