"""Crafted presets: nothing outside the preset is read, memory is bounded before
anything is built, and values no model can have are refused (issue 29: 1, 2, 9,
12, 17, 18).

Every preset here is a copy of the shipped `spikformer_tiny_digits` that the
test then damages the way an attacker would.
"""

import json
import os
import shutil
import threading

import h5py
import numpy as np
import pytest
from memory_budget import run_with_budget

from keras_spikformer import Spikformer, SpikformerBackbone, hub, presets
from keras_spikformer.config_checks import ConfigBoundsError, check_architecture
from keras_spikformer.hdf5_safety import UnsafeHDF5Error, inspect_hdf5
from keras_spikformer.presets import PresetError
from keras_spikformer.weight_transfer import WeightsError

pytestmark = pytest.mark.backend_independent

PRESET = "spikformer_tiny_digits"
# The child loads the clean preset once first, so the budget measures only what
# the crafted file adds (a crafted dataset here declares 1.6 GB or more).
WARM_UP = (
    f"from keras_spikformer import Spikformer\nSpikformer.from_preset({PRESET!r})\n"
)
HEAD = "dense/kernel"  # a path in task.weights.h5


@pytest.fixture
def preset(tmp_path):
    target = tmp_path / "preset"
    shutil.copytree(presets.zoo_dir() / PRESET, target)
    return target


def _datasets(f):
    """`{name: dataset}` of an open HDF5 file (visititems stops on non-None)."""
    found = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            found[name] = item

    f.visititems(visit)
    return found


def _head_paths(directory):
    with h5py.File(directory / "task.weights.h5", "r") as f:
        return list(_datasets(f))


def _rewrite_task_weights(directory, make):
    """Rewrites task.weights.h5 with `make(file, name, array)` for each dataset."""
    path = directory / "task.weights.h5"
    with h5py.File(path, "r") as f:
        arrays = {name: item[()] for name, item in _datasets(f).items()}
    path.unlink()
    with h5py.File(path, "w") as f:
        for name, array in arrays.items():
            make(f, name, array)


# --------------------------------------------------------------- 1: disclosure
def _external(secret):
    def make(f, name, array):
        f.create_dataset(
            name,
            shape=array.shape,
            dtype=array.dtype,
            external=[(str(secret), 0, 2**20)],
        )

    return make


def _virtual(source):
    def make(f, name, array):
        layout = h5py.VirtualLayout(shape=array.shape, dtype=array.dtype)
        layout[...] = h5py.VirtualSource(str(source), "data", shape=array.shape)
        f.create_virtual_dataset(name, layout, fillvalue=0)

    return make


def _soft_link(f, name, array):
    f.create_dataset("elsewhere/" + name, data=array)
    f[name] = h5py.SoftLink("/elsewhere/" + name)


def _external_link(source):
    def make(f, name, array):
        f[name] = h5py.ExternalLink(str(source), "data")

    return make


def test_external_storage_never_reads_the_named_file(preset, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"HF_TOKEN=hf_supersecret" * 4000)
    _rewrite_task_weights(preset, _external(secret))
    with pytest.raises(WeightsError, match="external raw storage"):
        Spikformer.from_preset(str(preset))
    with pytest.raises(PresetError, match="external raw storage"):
        hub.check_preset_directory(preset)  # the pre-upload check refuses it too


@pytest.mark.parametrize("kind", ["virtual", "soft", "external_link"])
def test_virtual_datasets_and_links_are_refused(preset, tmp_path, kind):
    source = tmp_path / "other.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("data", data=np.ones((64, 64), "float32"))
    make = {
        "virtual": _virtual(source),
        "soft": _soft_link,
        "external_link": _external_link(source),
    }[kind]
    _rewrite_task_weights(preset, make)
    with pytest.raises(WeightsError, match="task.weights.h5"):
        Spikformer.from_preset(str(preset))


def test_backbone_weights_with_external_storage_are_refused(preset, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0" * 10000)
    path = preset / "model.weights.h5"
    with h5py.File(path, "a") as f:
        names = list(_datasets(f))
        shape, dtype = f[names[0]].shape, f[names[0]].dtype
        del f[names[0]]
        f.create_dataset(
            names[0], shape=shape, dtype=dtype, external=[(str(secret), 0, 2**20)]
        )
    with pytest.raises(WeightsError, match="model.weights.h5.*external raw storage"):
        Spikformer.from_preset(str(preset))


def test_external_storage_on_a_fifo_does_not_hang(preset, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _rewrite_task_weights(preset, _external(fifo))
    outcome = []

    def load():
        try:
            Spikformer.from_preset(str(preset))
        except WeightsError as e:
            outcome.append(str(e))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(120)
    if thread.is_alive():  # unblock the reader so the test process can exit
        with open(fifo, "wb") as f:
            f.write(b"\0" * 2**20)
    assert not thread.is_alive() and outcome and "external raw storage" in outcome[0]


@pytest.mark.parametrize("name", ["metadata.json", "task.weights.h5", "config.json"])
def test_preset_files_pointing_outside_are_refused(preset, tmp_path, name):
    outside = tmp_path / "outside"
    outside.write_bytes((preset / name).read_bytes())
    (preset / name).unlink()
    (preset / name).symlink_to(outside)
    with pytest.raises(PresetError, match=f"{name} points outside the preset"):
        Spikformer.from_preset(str(preset))


def test_fifo_and_device_files_in_a_preset_are_refused(preset):
    (preset / "task.weights.h5").unlink()
    os.mkfifo(preset / "task.weights.h5")
    with pytest.raises(PresetError, match="task.weights.h5 is a FIFO"):
        Spikformer.from_preset(str(preset))
    (preset / "task.weights.h5").unlink()
    (preset / "task.weights.h5").symlink_to("/dev/zero")
    with pytest.raises(PresetError, match="points outside"):
        Spikformer.from_preset(str(preset))


def test_links_inside_the_preset_directory_still_load(preset):
    (preset / "store").mkdir()
    shutil.move(preset / "recipe.json", preset / "store" / "recipe.json")
    (preset / "recipe.json").symlink_to(preset / "store" / "recipe.json")
    model = Spikformer.from_preset(str(preset))
    assert model.preset_recipe["epochs"] > 0


# ----------------------------------------------------- 2: memory before checks
def _huge_head(f, name, array):
    f.create_dataset(
        name, shape=(40000, 10000), dtype="float32", chunks=(1000, 1000),
        compression="gzip", fillvalue=1.0,
    )  # fmt: skip


def _copy(preset, tmp_path, name):
    return shutil.copytree(preset, tmp_path / name)


def test_crafted_weight_files_stay_within_a_memory_budget(preset, tmp_path):
    """One child process loads three crafted presets; each refusal (or the load
    that skips an unused dataset) adds under 300 MiB where reading the declared
    datasets would take 1.6 to 6.4 GB."""
    shape_bomb = _copy(preset, tmp_path, "shape_bomb")
    _rewrite_task_weights(shape_bomb, _huge_head)
    unused = _copy(preset, tmp_path, "unused")
    with h5py.File(unused / "task.weights.h5", "a") as f:
        f.create_dataset("unused", shape=(50000, 10000), dtype="float32",
                         chunks=(1000, 1000), compression="gzip")  # fmt: skip
    extra = _copy(preset, tmp_path, "extra")
    with h5py.File(extra / "model.weights.h5", "a") as f:
        f.create_dataset("layers/extra/vars/0", shape=(40000, 40000), dtype="float32",
                         chunks=(1000, 1000), compression="gzip")  # fmt: skip
    for directory in (shape_bomb, unused, extra):
        assert sum(p.stat().st_size for p in directory.iterdir()) < 2_000_000
    code = "\n".join(
        f"try:\n    Spikformer.from_preset({str(d)!r}); outcome('loaded')\n"
        "except Exception as e:\n    outcome(e)"
        for d in (shape_bomb, unused, extra)
    )
    outcomes, _ = run_with_budget(code, budget_mb=300, setup=WARM_UP)
    assert "file [40000, 10000], model" in outcomes[0], outcomes
    assert outcomes[1] == "loaded"
    assert "more than the" in outcomes[2] and "Nothing was read" in outcomes[2]


CRAFTED_CONFIGS = [
    ("hidden_dim", 10**9), ("num_layers", 10**6), ("num_timesteps", 100000),
    ("image_shape", [100000, 100000, 1]), ("num_heads", 10**7),
]  # fmt: skip


def test_implausible_configs_are_refused_before_building(preset, tmp_path):
    directories = []
    for key, value in CRAFTED_CONFIGS:
        directory = _copy(preset, tmp_path, key)
        data = json.loads((directory / "config.json").read_text())
        data["config"][key] = value
        (directory / "config.json").write_text(json.dumps(data))
        directories.append(directory)
    code = "\n".join(
        f"try:\n    Spikformer.from_preset({str(d)!r}); outcome('built')\n"
        "except Exception as e:\n    outcome(f'{type(e).__name__}: {e}')"
        for d in directories
    )
    outcomes, _ = run_with_budget(code, budget_mb=200, setup=WARM_UP, timeout=120)
    for (key, _), text in zip(CRAFTED_CONFIGS, outcomes, strict=True):
        assert text.startswith("ConfigBoundsError") and f"`{key}" in text, text
        assert "config.json" in text


def test_plausibility_bounds_accept_every_zoo_preset():
    for name in presets.preset_names():
        config = presets.read_config(presets.zoo_dir() / name)
        check_architecture(config, name)  # raises on a bound too tight
    with pytest.raises(ConfigBoundsError, match="parameters"):
        check_architecture({"hidden_dim": 8192, "num_layers": 128}, "x")


def test_oversized_and_deep_json_is_refused(preset):
    (preset / "metadata.json").write_text(" " * (5 * 2**20) + "{}")
    with pytest.raises(PresetError, match="metadata.json is .* bytes, more than"):
        Spikformer.from_preset(str(preset))
    (preset / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(
        PresetError, match="metadata.json is corrupt.*nested too deeply"
    ):
        Spikformer.from_preset(str(preset))


# ------------------------------------------------------- 9: non-finite values
@pytest.mark.parametrize(
    "file, key, text",
    [("config.json", "v_threshold", "NaN"), ("config.json", "v_reset", "Infinity"),
     ("config.json", "attention_scale", "1e999"), ("preprocessor.json", "scale", "NaN"),
     ("preprocessor.json", "mean", "[-Infinity]")],
)  # fmt: skip
def test_non_finite_values_in_preset_json_are_refused(preset, file, key, text):
    path = preset / file
    data = json.loads(path.read_text())
    data["config"][key] = "@@"
    path.write_text(json.dumps(data).replace('"@@"', text))
    with pytest.raises(PresetError, match=f"{file} is corrupt.*finite"):
        Spikformer.from_preset(str(preset))


@pytest.mark.parametrize("key", ["v_threshold", "v_reset", "attention_scale", "tau"])
def test_non_finite_arguments_are_refused(key):
    with pytest.raises(ValueError, match=f"`?{key}`? .*finite"):
        SpikformerBackbone.from_preset(
            PRESET, load_weights=False, **{key: float("nan")}
        )
    with pytest.raises(ValueError, match=key):
        SpikformerBackbone(
            image_shape=(16, 16, 1), hidden_dim=16, num_layers=1, num_heads=1,
            num_timesteps=1, **{key: float("inf")},
        )  # fmt: skip


# -------------------------------------------- 12, 17: class and key checks
def test_task_and_preprocessor_files_naming_another_class_are_refused(preset):
    path = preset / "task.json"
    data = json.loads(path.read_text())
    data["registered_name"] = "keras_spikformer>QKFormer"
    path.write_text(json.dumps(data))
    with pytest.raises(
        PresetError, match="task.json describes 'keras_spikformer>QKFormer'"
    ):
        Spikformer.from_preset(str(preset))


@pytest.mark.parametrize("file", ["task.json", "preprocessor.json"])
def test_unknown_keys_in_task_files_are_refused(preset, file):
    path = preset / file
    data = json.loads(path.read_text())
    data["config"]["num_clases"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(PresetError, match=rf"{file} has keys \['num_clases'\]"):
        Spikformer.from_preset(str(preset))


def test_surrogate_must_be_a_surrogate(preset):
    path = preset / "config.json"
    data = json.loads(path.read_text())
    data["config"]["surrogate"] = {
        "module": "keras.layers", "class_name": "Dense", "config": {"units": 2},
        "registered_name": None,
    }  # fmt: skip
    path.write_text(json.dumps(data))
    with pytest.raises(TypeError, match="not a keras_spikformer Surrogate"):
        Spikformer.from_preset(str(preset))


def test_saved_presets_follow_the_umask(tmp_path):
    model = Spikformer.from_preset(PRESET)
    old = os.umask(0o022)
    try:
        model.save_to_preset(tmp_path / "saved")
    finally:
        os.umask(old)
    assert (tmp_path / "saved").stat().st_mode & 0o777 == 0o755


# ------------------------------------------------------- 18: clear messages
def test_weights_error_keeps_the_whole_reason(preset, monkeypatch):
    def fail(self, path):
        raise ValueError("Layer 'x' expected 2 variables\nbut received 0 variables")

    monkeypatch.setattr(SpikformerBackbone, "load_weights", fail)
    with pytest.raises(WeightsError, match="expected 2 variables but received 0"):
        Spikformer.from_preset(str(preset))


@pytest.mark.parametrize("revision", ["../../etc", "a/../b", "/abs", "main;rm"])
def test_hub_revisions_are_validated(revision):
    with pytest.raises(PresetError, match="not a valid revision"):
        hub.parse_handle(f"hf://owner/name@{revision}")
    assert hub.parse_handle("hf://owner/name@refs/pr/1") == ("owner/name", "refs/pr/1")


def test_inspect_reads_structure_only(preset):
    found = inspect_hdf5(preset / "task.weights.h5")
    assert set(found) == set(_head_paths(preset))
    with pytest.raises(UnsafeHDF5Error, match="declares"):
        inspect_hdf5(preset / "task.weights.h5", max_elements=1)
