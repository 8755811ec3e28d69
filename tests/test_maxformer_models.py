"""Max-Former / MS-QKFormer presets, configuration errors, analysis and training."""

import json
import warnings

import numpy as np
import pytest
from conftest import images_of
from test_maxformer_exactness import fixture_model

from keras_spikformer import presets
from keras_spikformer.analysis.energy import energy_report
from keras_spikformer.models.maxformer import (
    MaxFormer,
    MaxFormerBackbone,
    MSQKFormer,
    MSQKFormerBackbone,
)
from keras_spikformer.preset_builder import count_trainable_params

# Spec (successors/maxformer.md, section 5): the reference builders' counts.
PARAMS = {
    "maxformer_10_384_imagenet": (MaxFormer, 16_237_240, 4),
    "maxformer_10_512_imagenet": (MaxFormer, 28_653_480, 4),
    "maxformer_10_512_t1_imagenet": (MaxFormer, 28_653_480, 1),
    "maxformer_10_768_imagenet": (MaxFormer, 63_992_200, 4),
    "maxformer_10_768_t1_imagenet": (MaxFormer, 63_992_200, 1),
    "ms_qkformer_10_384_imagenet": (MSQKFormer, 16_473_688, 4),
    "ms_qkformer_10_768_t1_imagenet": (MSQKFormer, 64_962_760, 1),
}
# Code-only CIFAR and event flavours (no released weights).
CIFAR_PARAMS = {
    "maxformer_4_384_cifar10": (MaxFormer, 6_568_282, 4),
    "maxformer_4_384_cifar100": (MaxFormer, 6_602_932, 4),
    "ms_qkformer_4_384_cifar10": (MSQKFormer, 6_706_234, 4),
    "ms_qkformer_4_384_cifar100": (MSQKFormer, 6_740_884, 4),
    "maxformer_2_256_cifar10dvs": (MaxFormer, 1_455_626, 16),
    "maxformer_2_256_dvsgesture": (MaxFormer, 1_455_883, 16),
}
RELEASE = "https://github.com/bic-L/MaxFormer/releases/download/checkpoints/"
TOP1 = {
    "maxformer_10_384_imagenet": 77.78,
    "maxformer_10_512_t1_imagenet": 75.43,
    "maxformer_10_768_imagenet": 82.39,
    "maxformer_10_768_t1_imagenet": 78.60,
    "maxformer_4_384_cifar10": 97.04,
    "maxformer_4_384_cifar100": 82.65,
    "maxformer_2_256_cifar10dvs": 84.2,
    "maxformer_2_256_dvsgesture": 98.61,
}
TINY = dict(
    image_shape=(64, 64, 3), hidden_dim=64, stage_depths=(1, 2, 2), num_timesteps=2
)


@pytest.mark.backend_independent
def test_zoo_lists_every_preset_with_counts_release_asset_and_top1():
    for name, (cls, count, timesteps) in {**PARAMS, **CIFAR_PARAMS}.items():
        meta = cls.presets[name]
        assert meta["trainable_params"] == count, name
        assert meta["paper"]["num_timesteps"] == timesteps
        assert meta["paper"]["top1_accuracy"] == TOP1.get(name), name
        config = json.loads((presets.resolve(name) / "config.json").read_text())
        assert config["config"]["num_timesteps"] == timesteps
        if name in CIFAR_PARAMS:
            assert config["config"]["flavour"] in ("cifar", "dvs")
            assert meta["weights"] is None
            continue
        source = meta["weights_source"]
        assert source["url"] == RELEASE + source["file_name"]
        assert source["licence"] == "none stated"
        assert {"sha256", "size"} <= set(source)
    assert {"maxformer_tiny_imagenet"} <= set(MaxFormer.presets)
    assert {"ms_qkformer_tiny_imagenet"} <= set(MSQKFormer.presets)


@pytest.mark.large
@pytest.mark.backend_independent  # the variables a layer creates do not depend on the backend
@pytest.mark.parametrize("name", sorted({**PARAMS, **CIFAR_PARAMS}))
def test_full_size_preset_parameter_counts(name):
    cls, count, _ = {**PARAMS, **CIFAR_PARAMS}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls.from_preset(name, load_weights=False)
    assert count_trainable_params(model) == count


@pytest.mark.parametrize(
    "cls, overrides, message",
    [
        (MaxFormerBackbone, {"stage_depths": (1, 2)}, "3 positive block counts"),
        (MaxFormerBackbone, {"image_shape": (72, 72, 3)}, "not divisible by 16"),
        (MaxFormerBackbone, {"hidden_dim": 60}, "multiple of 8"),
        (MaxFormerBackbone, {"num_heads": 3}, "must divide"),
        (MSQKFormerBackbone, {"num_heads": 32}, r"widths \[16, 32, 64\]"),
        (MaxFormerBackbone, {"encoding": "rate"}, "`encoding` must be one of"),
        (MSQKFormerBackbone, {"flavour": "dvs"}, "does not run as committed"),
        (MaxFormerBackbone, {"flavour": "dvs"}, "2 positive block counts"),
    ],
)
def test_impossible_configs_fail_before_building(cls, overrides, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**TINY, **overrides})


@pytest.mark.backend_independent  # names and shapes only
@pytest.mark.parametrize(
    "cls, flavour, depths, stem",
    [
        (MaxFormerBackbone, "cifar", (1, 1, 2), "embed1"),  # `Embed_Orig`
        (MSQKFormerBackbone, "cifar", (1, 1, 2), "embed1"),
        (MaxFormerBackbone, "dvs", (1, 1), "max_embed3"),  # `Embed_Max_plus`
    ],
)
def test_cifar_and_dvs_names_round_trip_through_the_converter(
    cls, flavour, depths, stem
):
    from keras_spikformer.convert.families import family_of_model

    channels, encoding = (2, "frames") if flavour == "dvs" else (3, "direct")
    backbone = cls(
        image_shape=(32, 32, channels), hidden_dim=64, stage_depths=depths,
        num_timesteps=2, flavour=flavour, encoding=encoding,
    )  # fmt: skip
    grid = 2 if flavour == "dvs" else 8
    assert backbone.output.shape[1:] == (2, grid, grid, 64)
    family = family_of_model(backbone)
    names = family.reference_variable_map(backbone)
    assert f"patch_embed1.{stem}.embed_conv.weight" in names
    torch_order = {4: (3, 2, 0, 1), 2: (1, 0)}  # Keras -> PyTorch layouts
    state_dict = {
        k: np.zeros(tuple(v.shape[i] for i in torch_order.get(len(v.shape), (0,))))
        for k, v in names.items()
    }
    state_dict["head.weight"] = np.zeros((10, 64))
    config, num_classes, _ = family.infer_architecture(state_dict)
    assert config["flavour"] == flavour and config["encoding"] == encoding
    assert config["num_heads"] == (16 if flavour == "dvs" else 8)
    assert config["stage_depths"] == list(depths) and num_classes == 10


@pytest.mark.backend_independent  # a type check
def test_classifier_refuses_the_other_familys_backbone():
    backbone = MSQKFormerBackbone(**{**TINY, "stage_depths": (1, 1, 1)})
    with pytest.raises(TypeError, match="must be a MaxFormerBackbone"):
        MaxFormer(backbone, num_classes=10)


def test_energy_counts_spikes_after_the_encoding_conv_at_the_reference_rates():
    model, npz = fixture_model()  # the tiny preset's architecture, fixture weights
    rows = {row["name"]: row for row in energy_report(model, images_of(npz)).layers}
    assert rows["patch_embed1.embed1.embed_conv"]["input"] == "real"
    rate = float(npz["lif/patch_embed2.max_embed1.embed_lif"].mean())
    for name in (
        "patch_embed2.max_embed1.embed_conv",
        "patch_embed2.max_embed2.embed_conv",
    ):
        assert rows[name]["input"] == "spikes"
        np.testing.assert_allclose(rows[name]["input_rate"], rate, rtol=1e-6)
    mixer = rows["stage1.0.mixer.conv5"]
    rate = float(npz["lif/stage1.0.mixer.conv5_neuron"].mean())
    np.testing.assert_allclose(mixer["input_rate"], rate, rtol=1e-6)
    head = rows["head"]
    np.testing.assert_allclose(head["input_rate"], float(npz["lif/head_lif"].mean()))
    assert head["timesteps"] == 2


@pytest.mark.large
def test_cli_trains_the_tiny_maxformer(tmp_path, capsys, monkeypatch):
    import tensorflow_datasets as tfds

    from keras_spikformer.cli.main import main as cli
    from keras_spikformer.models.image_classifier import ImageClassifier

    original = ImageClassifier.compile

    def compile_eagerly(self, *args, **kwargs):  # tracing the step takes minutes here
        kwargs.update(jit_compile=False, run_eagerly=True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ImageClassifier, "compile", compile_eagerly)
    out = tmp_path / "run"
    args = ["train", "--preset", "maxformer_tiny_imagenet", "--dataset", "cifar10"]
    args += ["--data-dir", str(tmp_path), "--output", str(out)]
    args += ["--epochs", "1", "--batch-size", "8"]
    with tfds.testing.mock_data(num_examples=16):
        assert cli(args) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and np.isfinite(metrics["test_loss"])
    trained = MaxFormer.from_preset(str(out / "preset"))
    assert trained.num_classes == 10


def test_firing_rates_carry_reference_names_and_the_reference_rates():
    from keras_spikformer.analysis.firing_rates import firing_rates

    model, npz = fixture_model()
    rates = firing_rates(model, images_of(npz))
    for key in (k for k in npz.files if k.startswith("lif/")):
        np.testing.assert_allclose(
            rates[key[4:]], npz[key].mean(), rtol=1e-6, err_msg=key
        )
