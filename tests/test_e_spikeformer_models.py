"""E-SpikeFormer presets, family dispatch, parameter counts and the reference converters."""

import types
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from keras_spikformer.cli.main import main as cli_main
from keras_spikformer.convert import (
    convert_checkpoint,
    load_reference_weights,
    read_checkpoint,
)
from keras_spikformer.convert import e_spikeformer_large_weights as large_weights
from keras_spikformer.convert import e_spikeformer_weights as base_weights
from keras_spikformer.convert.spikformer_architecture import ArchitectureError
from keras_spikformer.models import ImageClassifier
from keras_spikformer.models.e_spikeformer import (
    ESpikeFormer,
    ESpikeFormerBaseBackbone,
    ESpikeFormerLarge,
    ESpikeFormerLargeBackbone,
)
from keras_spikformer.models.meta_spikeformer import MetaSpikeFormer

DATA = Path(__file__).parent / "data"
BASE_PTH = DATA / "sdt_v3_base_small.pth"
LARGE_PTH = DATA / "sdt_v3_large_small.pth"
V2_PTH = DATA / "sdt_v2_small.pth.tar"
# Trainable parameters of the reference builders (spec section 2.1 / 3.1).
BASE_COUNTS = {
    "e_spikeformer_5m_imagenet": 5_105_608,
    "e_spikeformer_10m_imagenet": 10_023_112,
    "e_spikeformer_19m_imagenet": 18_987_504,
}
LARGE_COUNTS = {
    "e_spikeformer_83m_1x4_imagenet": (83_022_096, 4),
    "e_spikeformer_83m_1x8_imagenet": (83_022_096, 8),
    "e_spikeformer_171m_1x4_imagenet": (171_740_714, 4),
    "e_spikeformer_171m_1x8_imagenet": (171_740_714, 8),
    "e_spikeformer_171m_1x8_384_imagenet": (171_740_714, 8),
}


def trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def images_of(kind):
    return np.load(DATA / f"sdt_v3_{kind}_small.npz")["input"].transpose(0, 2, 3, 1)


def test_from_preset_picks_the_family_and_runs():
    # Each class lists its backbone's presets (the converter picks recipes from them).
    assert "e_spikeformer_tiny_imagenet" in ESpikeFormer.presets
    assert "e_spikeformer_83m_1x4_imagenet" in ESpikeFormerLarge.presets
    assert "e_spikeformer_tiny_imagenet" not in ESpikeFormerLarge.presets
    base = ImageClassifier.from_preset("e_spikeformer_tiny_imagenet")
    assert type(base) is ESpikeFormer and trainable(base) == 324_418
    large = ESpikeFormer.from_preset("e_spikeformer_large_tiny_imagenet")
    assert type(large) is ESpikeFormerLarge and trainable(large) == 368_444
    assert large.distillation_head and large.backbone.rounding == "half_up"
    x = np.random.default_rng(0).uniform(0, 255, (2, 80, 96, 3)).astype("uint8")
    for model in (base, large):
        logits = model.predict(x, verbose=0)  # the preprocessor resizes to 64x64
        assert logits.shape == (2, 10) and np.all(np.isfinite(logits))
    with pytest.raises(Exception, match="ESpikeFormer"):
        MetaSpikeFormer.from_preset("e_spikeformer_tiny_imagenet")


def test_bad_configurations_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="num_heads"):
        ESpikeFormerBaseBackbone(widths=(8, 16, 30, 48))
    with pytest.raises(ValueError, match="distillation_head"):
        ESpikeFormer(ESpikeFormerBaseBackbone(image_shape=(32, 32, 3),
                     widths=(8, 16, 32, 48), num_layers=(0, 0)),
                     distillation_head=True)  # fmt: skip
    with pytest.raises(ValueError, match="use_rep_branch"):
        ESpikeFormerLargeBackbone(image_shape=(32, 32, 3), widths=(16, 32, 64),
                                  num_layers=1, rep_branch_width=96, use_rep_branch=True)  # fmt: skip


@pytest.mark.backend_independent
@pytest.mark.parametrize("preset", sorted(BASE_COUNTS))
def test_base_preset_parameter_counts_equal_the_reference(preset):
    model = ESpikeFormer.from_preset(preset, load_weights=False)
    assert trainable(model) == BASE_COUNTS[preset]
    assert model.backbone.rounding == "half_even" and model.backbone.spike_levels == 4


@pytest.mark.large
@pytest.mark.parametrize("preset", sorted(LARGE_COUNTS))
def test_large_preset_parameter_counts_equal_the_reference(preset):
    model = ImageClassifier.from_preset(preset, load_weights=False)
    count, levels = LARGE_COUNTS[preset]
    assert type(model) is ESpikeFormerLarge and trainable(model) == count
    assert model.backbone.spike_levels == levels and not model.backbone.use_rep_branch


@pytest.mark.backend_independent
def test_released_format_reads_with_its_pickled_namespace_as_inert_data():
    for path in (BASE_PTH, LARGE_PTH):
        contents = read_checkpoint(str(path), progress=False)
        assert contents.source_key == "model"
        assert {"optimizer", "epoch", "scaler", "args"} <= set(contents.extras)
        assert base_weights.recognises(contents.state_dict) == (path == BASE_PTH)
        assert large_weights.recognises(contents.state_dict) == (path == LARGE_PTH)


def shapes(**named):
    return {k: types.SimpleNamespace(shape=v) for k, v in named.items()}


@pytest.mark.backend_independent
def test_shapes_give_the_large_architecture_and_the_171m_stage1_width():
    sd = {k: np.zeros(v.shape) for k, v in read_checkpoint(
        str(LARGE_PTH), progress=False).state_dict.items()}  # fmt: skip
    config, classes, notes = large_weights.infer_architecture(sd, spike_levels=8)
    assert config["widths"] == [16, 32, 64] and config["num_layers"] == 2
    assert classes == 10 and config["distillation_head"] is True
    assert config["rep_branch_width"] is None and config["spike_levels"] == 8
    assert notes["spike_levels"] == "given" and notes["image_shape"] == "default"
    # The MAE-width 171M: stem 96 channels, stage 1 192 (shapes only).
    sd.update(
        shapes(
            **{
                "downsample1_1.encode_conv.weight": (96, 3, 7, 7),
                "downsample1_2.encode_conv.weight": (192, 96, 3, 3),
                "block3.0.rep_conv.conv1.1.weight": (96,),
            }
        )  # fmt: skip
    )
    config, _, _ = large_weights.infer_architecture(sd)
    assert config["widths"][0] == 192 and config["rep_branch_width"] == 96
    sd["downsample1_1.encode_conv.weight"] = types.SimpleNamespace(shape=(98, 3, 7, 7))
    with pytest.raises(ValueError, match="stem"):
        large_weights.infer_architecture(sd)


@pytest.mark.backend_independent
def test_v2_and_v3_checkpoints_and_presets_are_not_mixed_up(tmp_path):
    with pytest.raises(ArchitectureError, match="meta_spikeformer checkpoint"):
        convert_checkpoint(str(V2_PTH), tmp_path / "a", preset="e_spikeformer_tiny_imagenet",
                           progress=False)  # fmt: skip
    with pytest.raises(ArchitectureError, match="Spike-driven Transformer V3"):
        convert_checkpoint(str(BASE_PTH), tmp_path / "b",
                           preset="meta_spikeformer_tiny_imagenet", progress=False)  # fmt: skip
    with pytest.raises(ArchitectureError, match="Large"):
        convert_checkpoint(str(LARGE_PTH), tmp_path / "c",
                           preset="e_spikeformer_tiny_imagenet", progress=False)  # fmt: skip
    assert not any(tmp_path.iterdir())


@pytest.mark.backend_independent
def test_checkpoints_convert_with_and_without_a_preset(tmp_path):
    """Base through the CLI without --preset, Large through the API with one."""
    npz = np.load(DATA / "sdt_v3_base_small.npz")
    out = tmp_path / "base"
    assert cli_main(["convert", str(BASE_PTH), "--output", str(out), "--image-size",
                     "64", "--spike-levels", "4", "--no-progress"]) == 0  # fmt: skip
    model = ImageClassifier.from_preset(str(out))
    assert type(model) is ESpikeFormer
    logits = ops.convert_to_numpy(model(images_of("base"), training=False))
    np.testing.assert_array_equal(logits, npz["logits"])

    npz = np.load(DATA / "sdt_v3_large_small.npz")
    out = tmp_path / "large"
    preset = "e_spikeformer_large_tiny_imagenet"
    with pytest.raises(ValueError, match="distillation_head=True"):
        convert_checkpoint(str(LARGE_PTH), out, preset=preset, progress=False)
    convert_checkpoint(str(LARGE_PTH), out, preset=preset, distillation_head=True,
                       progress=False)  # fmt: skip
    model = ImageClassifier.from_preset(str(out))
    assert type(model) is ESpikeFormerLarge
    logits = ops.convert_to_numpy(model(images_of("large"), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)
    # Without a preset: widths, blocks, classes and head_kd from the shapes.
    report = convert_checkpoint(str(LARGE_PTH), tmp_path / "inferred", image_size=(64, 64),
                                progress=False)  # fmt: skip
    assert report.provenance["distillation_head"] == "shapes"
    model = ImageClassifier.from_preset(str(tmp_path / "inferred"))
    assert model.distillation_head and list(model.backbone.widths) == [16, 32, 64]
    logits = ops.convert_to_numpy(model(images_of("large"), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_large_module_key_style_loads_and_v2_weights_are_refused():
    sd = read_checkpoint(str(LARGE_PTH), progress=False).state_dict
    wrapped = {k.replace(".conv1.0.", ".conv1.0.module.").replace(".conv2.0.", ".conv2.0.module.")
               if k.startswith("ConvBlock") else k: v for k, v in sd.items()}  # fmt: skip
    assert any(".module." in k for k in wrapped)
    model = ESpikeFormerLarge.from_preset("e_spikeformer_large_tiny_imagenet")
    report = load_reference_weights(model, wrapped)
    assert report.ok and len(report.loaded) == len(model.weights)
    with pytest.raises(ValueError, match="meta_spikeformer checkpoint"):
        load_reference_weights(
            model, read_checkpoint(str(V2_PTH), progress=False).state_dict
        )
