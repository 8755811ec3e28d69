"""Untrusted checkpoints, converter options and recipes (issue 29, items 9-18).

Every crafted file is made here from the reference fixtures in tests/data:
each must be refused with an error naming the file, the tensor or field and
the fix, before any model is built, or (item 13) convert as the CLI does.
"""

import json
import math
import shutil
import zipfile

import numpy as np
import pytest
from conftest import DATA

from keras_spikformer import QKFormer, presets
from keras_spikformer.cli.main import main as cli
from keras_spikformer.convert import (
    ArchitectureError,
    CheckpointFormatError,
    convert_checkpoint,
    load_reference_weights,
    qkformer_weights,
    read_state_dict,
)
from keras_spikformer.convert import converter as converter_module
from keras_spikformer.preset_builder import build_task
from keras_spikformer.training.distillation import staged_recipes
from keras_spikformer.training.recipe import Recipe

pytestmark = pytest.mark.backend_independent

# Small fixtures, one per family: Spike-driven Transformer V1, QKFormer and
# Meta-SpikeFormer (which needs the options its shapes cannot tell).
SDT = DATA / "sdt_v1_small.pth.tar"
QKFORMER = DATA / "qkformer_small.pth.tar"
META = DATA / "sdt_v2_small.pth.tar"
META_OPTIONS = {"num_heads": 4, "image_shape": (64, 64, 3)}


def _save_npz(path, state_dict):
    """Writes a state dict as this project's npz checkpoint (`sd/<name>`)."""
    np.savez(path, **{f"sd/{name}": value for name, value in state_dict.items()})
    return path


@pytest.fixture
def no_model_built(monkeypatch):
    """Fails the test if the converter gets as far as building a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the checkpoint was checked")

    monkeypatch.setattr(converter_module.preset_builder, "build_task", refuse)


# ------------------------------------------------- item 10: tensor values
def _nan_at_3(w):
    out = w.copy()
    out.flat[3] = np.nan
    return out


def _inf_at_0(w):
    out = w.copy()
    out.flat[0] = -np.inf
    return out


BAD_HEADS = {
    "int8": (lambda w: np.round(w * 100).astype(np.int8), "dtype int8 (integers)"),
    "bool": (lambda w: w > 0, "dtype bool (booleans)"),
    "complex": (lambda w: w.astype(np.complex64), "dtype complex64 (complex"),
    "strings": (lambda w: w.astype(str), "(text)"),
    "datetimes": (lambda w: np.zeros(w.shape, "M8[s]"), "(dates)"),
    "structured": (
        lambda w: np.zeros(w.shape, [("a", "<f4"), ("b", "<i4")]),
        "records with fields a, b",
    ),
    "nan": (_nan_at_3, "1 NaN or infinite value(s) (the first at index (0, 3)"),
    "inf": (_inf_at_0, "1 NaN or infinite value(s) (the first at index (0, 0)"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADS))
def test_non_float_or_non_finite_tensors_are_refused_by_name(
    tmp_path, no_model_built, case
):
    make, expected = BAD_HEADS[case]
    state_dict = read_state_dict(SDT)
    state_dict["head.weight"] = make(state_dict["head.weight"])
    path = _save_npz(tmp_path / f"{case}.npz", state_dict)
    with pytest.raises(CheckpointFormatError) as info:
        convert_checkpoint(path, tmp_path / "out", progress=False)
    message = str(info.value)
    assert str(path) in message and "'head.weight'" in message, message
    assert expected in message, message
    assert "Traceback" not in message and not (tmp_path / "out").exists()


def test_negative_batch_norm_variance_is_refused(tmp_path, no_model_built):
    state_dict = read_state_dict(SDT)
    name = "patch_embed.proj_bn.running_var"
    state_dict[name] = state_dict[name] - 10.0
    path = _save_npz(tmp_path / "negative_var.npz", state_dict)
    with pytest.raises(CheckpointFormatError, match="negative values") as info:
        convert_checkpoint(path, tmp_path / "out", progress=False)
    assert str(path) in str(info.value) and repr(name) in str(info.value)


def test_load_reference_weights_refuses_nan_and_leaves_the_model_unchanged():
    state_dict = read_state_dict(QKFORMER)
    config, num_classes, _ = qkformer_weights.infer_architecture(state_dict)
    model = build_task(QKFormer, {**config, "num_classes": num_classes})
    before = [np.array(v) for v in model.weights]
    name = "stage1.0.tssa.q_conv.weight"
    state_dict[name] = _nan_at_3(state_dict[name])
    with pytest.raises(CheckpointFormatError, match=f"'{name}' holds 1 NaN"):
        load_reference_weights(model, state_dict)
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, np.array(new))


# ------------------------------------------------- item 18: clear messages
def test_text_in_an_npz_names_the_member_and_gives_no_pickle_advice(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("these are my notes, not weights\n")
    member = tmp_path / "member.npz"
    with zipfile.ZipFile(member, "w") as archive:
        archive.writestr("sd/head.weight.npy", "hello")
    with pytest.raises(CheckpointFormatError) as info:
        read_state_dict(text)
    assert "pickle" not in str(info.value) and str(text) in str(info.value)
    with pytest.raises(CheckpointFormatError) as info:
        read_state_dict(member)
    message = str(info.value)
    assert "member sd/head.weight.npy is not a numpy array" in message, message
    assert "pickle" not in message and str(member) in message


def test_transposed_qkformer_head_is_reported_as_transposed(tmp_path, no_model_built):
    state_dict = read_state_dict(QKFORMER)
    state_dict["head.weight"] = state_dict["head.weight"].T.copy()  # [64, 10]
    path = _save_npz(tmp_path / "transposed_head.npz", state_dict)
    with pytest.raises(ArchitectureError) as info:
        convert_checkpoint(path, tmp_path / "out", progress=False)
    message = str(info.value)
    assert str(path) in message and "`head.weight` has shape [64, 10]" in message
    assert "transposed" in message and "[10, 64]" in message, message
    assert "hidden_dim" not in message.split("PyTorch")[0], message


def test_wrong_meta_depthwise_kernel_is_reported_in_the_checkpoint_layout(tmp_path):
    state_dict = read_state_dict(META)
    name = "ConvBlock1_1.0.Conv.dwconv.weight"
    kernel = state_dict[name]  # PyTorch depthwise layout [C, 1, kh, kw]
    state_dict[name] = np.concatenate([kernel, kernel], axis=1)
    path = _save_npz(tmp_path / "depthwise.npz", state_dict)
    with pytest.raises(ArchitectureError) as info:
        convert_checkpoint(path, tmp_path / "out", progress=False, **META_OPTIONS)
    wanted = [kernel.shape[0], 1, *kernel.shape[2:]]
    line = f"{name}: checkpoint {[kernel.shape[0], 2, *kernel.shape[2:]]}, "
    assert f"{line}model needs {wanted}" in str(info.value), str(info.value)


# ---------------------------------------- item 12: --distillation-head
def test_distillation_head_without_preset_is_refused_when_the_file_has_none(
    tmp_path, capsys, no_model_built
):
    with pytest.raises(ArchitectureError) as info:
        convert_checkpoint(
            META, tmp_path / "out", progress=False, distillation_head=True,
            **META_OPTIONS,
        )  # fmt: skip
    message = str(info.value)
    assert str(META) in message and "has no `head_kd`" in message, message
    assert "Drop --distillation-head" in message and "--preset" in message
    args = ["convert", str(META), "-o", str(tmp_path / "cli"), "--num-heads", "4",
            "--image-size", "64", "--distillation-head", "--no-progress"]  # fmt: skip
    assert cli(args) == 2
    assert "has no `head_kd`" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


# ------------------------------- item 13: image_shape/encoding in Python
def _unnamed(config):
    """A saved config without its layer names (Keras numbers them per process)."""
    if isinstance(config, dict):
        return {k: _unnamed(v) for k, v in config.items() if k != "name"}
    if isinstance(config, list):
        return [_unnamed(v) for v in config]
    return config


def test_python_api_converts_a_dvs_checkpoint_like_the_cli(tmp_path):
    state_dict = read_state_dict(SDT)  # a CIFAR model; keep 2 input channels
    stem = "patch_embed.proj_conv.weight"
    state_dict[stem] = np.ascontiguousarray(state_dict[stem][:, :2])
    path = _save_npz(tmp_path / "dvs.npz", state_dict)
    api, via_cli = tmp_path / "api", tmp_path / "cli"
    convert_checkpoint(
        path, api, progress=False, image_shape=(32, 32, 2), encoding="frames"
    )
    args = ["convert", str(path), "-o", str(via_cli), "--image-size", "32",
            "--encoding", "frames", "--no-progress"]  # fmt: skip
    assert cli(args) == 0
    for name in (presets.CONFIG_FILE, presets.PREPROCESSOR_FILE):
        ours = _unnamed(json.loads((api / name).read_text()))
        theirs = _unnamed(json.loads((via_cli / name).read_text()))
        assert ours == theirs, name
    config = presets.read_config(api)
    assert config["image_shape"] == [32, 32, 2] and config["encoding"] == "frames"


# --------------------------------------------------- item 9: recipe.json
BAD_RECIPE_VALUES = [
    ("learning_rate", math.nan, "a finite number > 0"),
    ("weight_decay", math.nan, "a finite number >= 0 and <= 1"),
    ("learning_rate", -1e-3, "a finite number > 0"),
    ("label_smoothing", 5, "a finite number >= 0 and < 1"),
    ("warmup_epochs", -3, "an integer >= 0"),
    ("global_batch_size", 0, "an integer >= 1"),
    ("min_learning_rate", math.inf, "a finite number >= 0"),
    ("epochs", 2.5, "an integer >= 1"),
    ("cooldown_epochs", -1, "an integer >= 0"),
]


def _recipe_file(tmp_path, **changes):
    data = json.loads(
        (presets.resolve("spikformer_tiny_cifar") / presets.RECIPE_FILE).read_text()
    )
    for key, value in changes.items():
        section, _, field = key.rpartition("__")
        target = data.setdefault(section, {}) if section else data
        target[field] = value
    path = tmp_path / presets.RECIPE_FILE
    path.write_text(json.dumps(data))  # NaN/Infinity as Python's json writes them
    return path


@pytest.mark.parametrize("field, value, valid", BAD_RECIPE_VALUES)
def test_recipe_numbers_must_be_finite_and_in_range(tmp_path, field, value, valid):
    path = _recipe_file(tmp_path, **{field: value})
    with pytest.raises(ValueError) as info:
        Recipe.from_json(path)
    message = str(info.value)
    assert str(path) in message and f"`{field}` must be {valid}" in message, message


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("augment__mixup_prob", 2.0, "`augment.mixup_prob` must be"),
        ("augment__random_erasing", math.nan, "`augment.random_erasing` must be"),
        ("normalize__std", [0.25, 0.0, 0.25], "`normalize.std` must be a list"),
        ("eval__crop_ratio", 0, "`eval.crop_ratio` must be"),
        ("loss__lamb", -1, "`loss.lamb` must be"),
        ("mixed_precision", "false", "`mixed_precision` must be true or false"),
    ],
)
def test_recipe_sections_are_checked_too(tmp_path, key, value, shown):
    path = _recipe_file(tmp_path, **{key: value})
    with pytest.raises(ValueError) as info:
        Recipe.from_json(path)
    assert str(path) in str(info.value) and shown in str(info.value)


def test_every_zoo_recipe_and_fine_tune_stage_passes_the_checks():
    names = [n for n in presets.preset_names()
             if (presets.resolve(n) / presets.RECIPE_FILE).is_file()]  # fmt: skip
    assert len(names) >= 20
    for name in names:
        recipe = Recipe.from_preset(name)
        if "finetune" in recipe.extras:
            staged_recipes(name)


def test_train_refuses_a_nan_learning_rate_before_building_anything(tmp_path, capsys):
    preset = tmp_path / "preset"
    shutil.copytree(presets.resolve("spikformer_tiny_digits"), preset)
    recipe = json.loads((preset / presets.RECIPE_FILE).read_text())
    recipe["learning_rate"] = math.nan
    (preset / presets.RECIPE_FILE).write_text(json.dumps(recipe))
    run = tmp_path / "run"
    args = ["train", "--preset", str(preset), "--dataset", "digits", "--output",
            str(run), "--epochs", "1"]  # fmt: skip
    assert cli(args) == 2
    error = capsys.readouterr().err
    assert str(preset / presets.RECIPE_FILE) in error, error
    assert "`learning_rate` must be a finite number > 0; got nan" in error
    assert not (run / "model.keras").exists() and not (run / "preset").exists()
