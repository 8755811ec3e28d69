"""Tests for the torch-free checkpoint reader.

Data in tests/data:
- cifar10_small.pth.tar, imagenet_small.pth.tar and the matching .npz files
  are copies of ../shared/fixtures (timm training checkpoints; the npz files
  hold the same weights as `sd/<name>`).
- legacy_small.pth, zip_small.pth and legacy_small_expected.npz were written
  once with torch 2.13.0+cpu and numpy 2.4 in a throw-away venv, by:

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    sd = collections.OrderedDict(
        weight=base.t(),  # non-contiguous view: shape (6, 4), strides (1, 6)
        row=base[1],  # second view of the same storage, offset 6
        half=torch.tensor([[0.5, -1.25], [3.0, 65504.0]], dtype=torch.float16),
        bf16=torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16),
        mask=torch.tensor([True, False, True]),
        num_batches_tracked=torch.tensor(7),  # int64 scalar
    )
    args = argparse.Namespace(lr=5e-4, T=4, model="spikformer")
    torch.save({"state_dict": sd, "args": args, "epoch": 3}, "legacy_small.pth",
               _use_new_zipfile_serialization=False)
    ddp = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
    torch.save({"model": ddp, "args": args, "metric": np.float64(0.75),
                "dtype": torch.float16, "size": torch.Size([2, 3])}, "zip_small.pth")
    bits = sd["bf16"].view(torch.int16).numpy().view(np.uint16)
    np.savez("legacy_small_expected.npz", bf16_bits=bits,
             **{k: v.numpy() for k, v in sd.items() if k != "bf16"})
"""

import builtins
import json
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from keras_spikformer.convert import checkpoint_files, torch_pickle
from keras_spikformer.convert.checkpoint_files import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    read_checkpoint,
    read_state_dict,
)

# Checkpoint files are parsed in numpy whatever the Keras backend.
pytestmark = pytest.mark.backend_independent


DATA = Path(__file__).parent / "data"
TIMM_ARGS = {
    "model": "spikformer",
    "lr": 0.0005,
    "weight_decay": 0.06,
    "epochs": 300,
    "T": 4,
    "batch_size": 128,
}


def _npz_weights(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}.npz") as npz:
        return {k[3:]: npz[k] for k in npz.files if k.startswith("sd/")}


def _assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        assert actual[name].shape == array.shape, name
        np.testing.assert_array_equal(actual[name], array, err_msg=name)
        assert actual[name].flags.c_contiguous and actual[name].flags.writeable


def test_cifar10_fixture_matches_npz():
    contents = read_checkpoint(DATA / "cifar10_small.pth.tar")
    _assert_same(contents.state_dict, _npz_weights("cifar10_small"))
    assert contents.format == "torch-zip"
    assert contents.source_key == "state_dict"
    assert contents.stripped_prefix is None
    assert "optimizer" in contents.extras and "optimizer" not in contents.metadata
    assert contents.metadata["args"] == TIMM_ARGS
    assert contents.metadata["epoch"] == 299
    assert contents.metadata["amp_scaler"] == {"scale": 65536.0, "growth_factor": 2.0}


def test_cifar10_fixture_has_no_ema():
    with pytest.raises(CheckpointFormatError, match="no EMA weights.*'state_dict'"):
        read_state_dict(DATA / "cifar10_small.pth.tar", use_ema=True)


@pytest.mark.parametrize("use_ema", [False, True])
def test_imagenet_fixture_matches_npz(use_ema):
    contents = read_checkpoint(DATA / "imagenet_small.pth.tar", use_ema=use_ema)
    _assert_same(contents.state_dict, _npz_weights("imagenet_small"))
    assert contents.source_key == ("state_dict_ema" if use_ema else "state_dict")
    assert contents.stripped_prefix == "module."
    other = "state_dict" if use_ema else "state_dict_ema"
    assert other in contents.extras and other not in contents.metadata


def test_npz_with_sd_prefix():
    contents = read_checkpoint(DATA / "cifar10_small.npz")
    _assert_same(contents.state_dict, _npz_weights("cifar10_small"))
    assert contents.format == "npz"
    assert contents.source_key == "sd"
    assert "logits" in contents.extras


def test_npz_without_prefix(tmp_path):
    expected = {"a.weight": np.ones((2, 3), np.float32), "step": np.array(5)}
    np.savez(tmp_path / "plain.npz", **expected)
    contents = read_checkpoint(tmp_path / "plain.npz")
    _assert_same(contents.state_dict, expected)
    assert contents.source_key is None and contents.extras == []


@pytest.mark.parametrize("name", ["legacy_small.pth", "zip_small.pth"])
def test_torch_written_files(name):
    contents = read_checkpoint(DATA / name)
    with np.load(DATA / "legacy_small_expected.npz") as npz:
        expected = {k: npz[k] for k in npz.files}
    bf16 = expected.pop("bf16_bits").view(ml_dtypes.bfloat16)
    _assert_same(contents.state_dict, {**expected, "bf16": bf16})
    assert contents.state_dict["weight"].shape == (6, 4)  # was a transposed view
    assert contents.state_dict["num_batches_tracked"].ndim == 0
    assert contents.metadata["args"] == {"lr": 5e-4, "T": 4, "model": "spikformer"}


def test_formats_and_unwrapping_of_torch_written_files():
    legacy = read_checkpoint(DATA / "legacy_small.pth")
    assert (legacy.format, legacy.source_key) == ("torch-legacy", "state_dict")
    assert legacy.metadata["epoch"] == 3
    zipped = read_checkpoint(DATA / "zip_small.pth")
    assert (zipped.format, zipped.source_key) == ("torch-zip", "model")
    assert zipped.stripped_prefix == "module."
    assert zipped.metadata["metric"] == 0.75  # a numpy float64 in the file
    assert zipped.metadata["dtype"] == "torch.float16"
    assert zipped.metadata["size"] == (2, 3)


def test_shared_storage_is_read_once(monkeypatch):
    reads = []
    original = zipfile.ZipFile.read

    def counting_read(self, name, *args):
        reads.append(name)
        return original(self, name, *args)

    monkeypatch.setattr(zipfile.ZipFile, "read", counting_read)
    read_state_dict(DATA / "zip_small.pth")
    storages = [name for name in reads if "/data/" in name]
    assert len(storages) == len(set(storages)) == 5  # 6 tensors, 5 storages


class _Exploit:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _exploits(marker: Path) -> dict[str, _Exploit]:
    return {
        f"{os.system.__module__}.system": _Exploit(os.system, f"touch {marker}"),
        "builtins.eval": _Exploit(eval, f"__import__('os').system('touch {marker}')"),
        "subprocess.Popen": _Exploit(subprocess.Popen, ["touch", str(marker)]),
        "builtins.__import__": _Exploit(builtins.__import__, "os"),
    }


def _write_malicious(path: Path, layout: str, exploit: _Exploit, protocol: int) -> None:
    payload = pickle.dumps({"state_dict": {}, "x": exploit}, protocol=protocol)
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
            archive.writestr("archive/byteorder", "little")
            archive.writestr("archive/.format_version", "1")
    elif layout == "legacy":
        header = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}]
        path.write_bytes(
            b"".join(pickle.dumps(x, protocol=2) for x in header) + payload
        )
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("layout", ["zip", "legacy", "raw"])
@pytest.mark.parametrize(
    "global_name",
    ["os.system", "builtins.eval", "subprocess.Popen", "builtins.__import__"],
)
def test_malicious_pickle_is_refused(tmp_path, layout, protocol, global_name):
    marker = tmp_path / "pwned"
    exploits = _exploits(marker)
    if global_name == "os.system":
        global_name = f"{os.system.__module__}.system"  # posix.system on Linux
    path = tmp_path / "evil.pth"
    _write_malicious(path, layout, exploits[global_name], protocol)
    with pytest.raises(UnsafeCheckpointError, match=global_name) as info:
        read_state_dict(path)
    assert "no code from it ran" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["cifar10_small.pth.tar", "legacy_small.pth"])
@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.98])
def test_truncated_file(tmp_path, name, fraction):
    data = (DATA / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointFormatError, match=str(path)):
        read_state_dict(path)


def test_storage_shorter_than_tensor(tmp_path):
    path = tmp_path / "short.pth"
    with (
        zipfile.ZipFile(DATA / "zip_small.pth") as src,
        zipfile.ZipFile(path, "w") as dst,
    ):
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:40] if name == "zip_small/data/0" else data)
    with pytest.raises(CheckpointFormatError, match="holds 10 elements.*needs 24"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "Cannot open checkpoint"),
        (b"", "is empty"),
        (np.random.default_rng(0).bytes(4096), "not a PyTorch"),
        (pickle.dumps({"a": 1}, protocol=2), "no torch.save magic number"),
    ],
    ids=["missing", "empty", "random", "plain-pickle"],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "model.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointFormatError, match=message):
        read_state_dict(path)


def _write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    header, blobs, offset = {}, [], 0
    for name, (code, array) in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()  # little-endian host
        header[name] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def test_safetensors_round_trip(tmp_path):
    expected = {
        "conv.weight": ("F32", np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)),
        "half": ("F16", np.array([[0.5, -1.5], [65504.0, 0.0]], np.float16)),
        "steps": ("I64", np.array(123456789012, np.int64)),
        "bf16": ("BF16", np.array([1.0, -2.5], ml_dtypes.bfloat16)),
        "mask": ("BOOL", np.array([True, False])),
    }
    path = tmp_path / "model.safetensors"
    _write_safetensors(path, expected, metadata={"format": "pt"})
    contents = read_checkpoint(path)
    assert contents.format == "safetensors"
    _assert_same(contents.state_dict, {k: v for k, (_, v) in expected.items()})


@pytest.mark.parametrize(
    "header, message",
    [
        (b'{"a": {"dtype": "F32", ', "JSONDecodeError"),
        (b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}', "offsets"),
        (b'{"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 1]}}', "dtype 'X9'"),
        (b'{"__metadata__": {"format": "pt"}}', "holds no tensors"),
    ],
    ids=["broken-json", "bad-offsets", "bad-dtype", "no-tensors"],
)
def test_bad_safetensors(tmp_path, header, message):
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    with pytest.raises(CheckpointFormatError, match=message):
        read_state_dict(path)


def test_progress_bar_only_for_large_files(monkeypatch, capsys):
    read_state_dict(DATA / "zip_small.pth")
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(checkpoint_files, "_PROGRESS_MIN_BYTES", 0)
    read_state_dict(DATA / "zip_small.pth")
    assert "6/6" in capsys.readouterr().out
    read_state_dict(DATA / "zip_small.pth", progress=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "module, name", [("torch._utils", "_rebuild_tensor_v2"), ("argparse", "Namespace")]
)
def test_pickle_cannot_modify_allowed_globals(tmp_path, module, name):
    # GLOBAL module.name, then BUILD with state (None, {"__defaults__": ()}).
    glob = f"c{module}\n{name}\n".encode()
    state = b"N}X\x0c\x00\x00\x00__defaults__)s\x86b."
    path = tmp_path / "tamper.pth"
    path.write_bytes(b"\x80\x02" + glob + state)
    with pytest.raises(CheckpointFormatError):
        read_state_dict(path)
    assert not hasattr(torch_pickle.ALLOWED_GLOBALS[(module, name)], "__defaults__")
