"""`keras-spikformer convert`: reference checkpoints -> presets, safely and exactly."""

import importlib.util
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest
from conftest import DATA, images_of, load_fixture

from keras_spikformer import Spikformer
from keras_spikformer.cli.main import main as cli
from keras_spikformer.convert import (
    ArchitectureError,
    CheckpointFormatError,
    UnsafeCheckpointError,
    convert_checkpoint,
    infer_architecture,
    read_state_dict,
)

TORCH_INSTALLED = importlib.util.find_spec("torch") is not None
# What the fixtures were built with (config_json) and what shapes cannot tell.
GIVEN = {
    "cifar10_small": ["--num-heads", "4", "--num-timesteps", "2"],
    "imagenet_small": [
        "--num-heads",
        "2",
        "--num-timesteps",
        "4",
        "--image-size",
        "64",
    ],
}


def _logits(preset_dir, name):
    npz, _ = load_fixture(name)
    model = Spikformer.from_preset(str(preset_dir), load_weights=True, preprocessor=None)
    return model.predict(images_of(npz), verbose=0), npz["logits"]


@pytest.mark.parametrize(
    "name, ema",
    [("cifar10_small", False), ("imagenet_small", False), ("imagenet_small", True)],
)
def test_cli_converts_fixture_checkpoints_exactly(tmp_path, name, ema):
    out = tmp_path / "preset"
    args = ["convert", str(DATA / f"{name}.pth.tar"), "-o", str(out), *GIVEN[name]]
    assert cli(args + (["--ema"] if ema else [])) == 0
    ours, reference = _logits(out, name)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)
    if not TORCH_INSTALLED:
        assert "torch" not in sys.modules


@pytest.mark.parametrize("name", ["cifar10_small", "imagenet_small"])
def test_inferred_architecture_is_the_fixture_configuration(name):
    _, config = load_fixture(name)
    cfg = config["builder_cfg"]
    sd = read_state_dict(DATA / f"{name}.pth.tar")
    heads, steps = cfg["num_heads"], config["T"]
    inferred, notes = infer_architecture(sd, num_heads=heads, num_timesteps=steps)
    assert notes["family"] == name.split("10")[0].split("_")[0]
    assert inferred["hidden_dim"] == cfg["embed_dims"]
    assert inferred["num_layers"] == cfg["depths"]
    assert inferred["mlp_ratio"] == cfg["mlp_ratios"]
    assert inferred["num_classes"] == cfg["num_classes"]
    assert inferred["qkv_bias"] is (name == "cifar10_small")
    assert inferred["image_shape"][2] == 3
    assert inferred["patch_size"] == cfg.get("patch_size", 16)
    assert (inferred["num_heads"], inferred["num_timesteps"]) == (heads, steps)
    assert notes["hidden_dim"] == "shapes" and notes["num_heads"] == "given"


def test_without_hints_a_matching_zoo_preset_fills_the_gaps():
    sd = read_state_dict(DATA / "cifar10_small.pth.tar")
    config, notes = infer_architecture(sd)
    assert (config["num_heads"], config["num_timesteps"]) == (4, 2)
    assert notes["num_heads"] == "preset spikformer_tiny_cifar"


def test_library_conversion_against_a_preset_records_the_report(tmp_path):
    report = convert_checkpoint(
        DATA / "cifar10_small.pth.tar", tmp_path / "p", preset="spikformer_tiny_cifar"
    )
    assert report.loaded == 63 and report.source_key == "state_dict"
    assert "optimizer" in report.extras and "args" in report.extras
    model = Spikformer.from_preset(str(tmp_path / "p"))
    assert model.preset_metadata["conversion"]["sha256"] == report.sha256
    ours, reference = _logits(tmp_path / "p", "cifar10_small")
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def _untouched(tmp_path):
    return sorted(os.listdir(tmp_path))


def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": Exploit()}))
        archive.writestr("archive/byteorder", "little")
    with pytest.raises(UnsafeCheckpointError, match="system"):
        convert_checkpoint(evil, tmp_path / "out")
    assert cli(["convert", str(evil), "-o", str(tmp_path / "out")]) == 2
    assert "system" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint(tmp_path):
    data = (DATA / "cifar10_small.pth.tar").read_bytes()
    broken = tmp_path / "broken.pth.tar"
    broken.write_bytes(data[: len(data) // 2])
    before = _untouched(tmp_path)
    with pytest.raises(CheckpointFormatError, match="broken.pth.tar"):
        convert_checkpoint(broken, tmp_path / "out")
    assert _untouched(tmp_path) == before


def test_checkpoint_of_another_architecture(tmp_path):
    resnet = tmp_path / "resnet.npz"
    np.savez(
        resnet,
        **{"conv1.weight": np.zeros((64, 3, 7, 7)), "fc.weight": np.zeros((10, 512))},
    )
    with pytest.raises(ArchitectureError, match="No supported family recognises"):
        convert_checkpoint(resnet, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_preset_checkpoint_mismatch_lists_the_problems(tmp_path):
    with pytest.raises(ArchitectureError) as info:
        convert_checkpoint(
            DATA / "cifar10_small.pth.tar",
            tmp_path / "out",
            preset="spikformer_tiny_imagenet",
        )
    text = str(info.value)
    assert "nothing was written" in text and "q_linear.bias" in text
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_checkpoint(DATA / "cifar10_small.pth.tar", out)
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces only a preset of ours, never a folder of the user's files.
    with pytest.raises(FileExistsError, match="not a keras-spikformer preset"):
        convert_checkpoint(DATA / "cifar10_small.pth.tar", out, overwrite=True)
    assert sorted(os.listdir(out)) == ["keep.txt"]
    out = tmp_path / "preset"
    convert_checkpoint(DATA / "cifar10_small.pth.tar", out)
    (out / "metadata.json").write_text('{"stale": true}')
    convert_checkpoint(DATA / "cifar10_small.pth.tar", out, overwrite=True)
    assert "stale" not in (out / "metadata.json").read_text()
    assert sorted(os.listdir(out)) == [
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "preprocessor.json",
        "recipe.json",
        "task.json",
        "task.weights.h5",
    ]
