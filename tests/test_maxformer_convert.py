"""Max-Former / MS-QKFormer converter: current names, released old names, `--family`."""

import re
import warnings

import numpy as np
import pytest
from conftest import DATA, images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer.cli.main import main as cli
from keras_spikformer.convert import (
    ArchitectureError,
    convert_checkpoint,
    load_reference_weights,
    maxformer_weights,
    ms_qkformer_weights,
    qkformer_weights,
)
from keras_spikformer.convert.checkpoint_files import read_state_dict
from keras_spikformer.convert.families import family_of_state_dict
from keras_spikformer.models.maxformer import MaxFormer, MSQKFormer
from keras_spikformer.models.qkformer import QKFormer, QKFormerBackbone

# Name mapping and file checks do not depend on the backend (the exactness
# test checks the converted weights' outputs on every backend).
pytestmark = pytest.mark.backend_independent

TINY = "maxformer_tiny_imagenet"
# Old (QKFormer-style) unit names of the released files, in the current order.
OLD_UNITS = {
    "patch_embed1": {"embed1": "proj", "embed2": "proj1", "embed3": "proj2", "embed4": "proj_res"},
    "patch_embed2": {"max_embed1": "proj3", "embed1": "proj4", "max_embed2": "proj_res"},
}  # fmt: skip
OLD_UNITS["patch_embed3"] = OLD_UNITS["patch_embed2"]


def from_preset(cls, name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_preset(name, **kwargs)


def old_names(state_dict):
    """The fixture's tensors renamed as the released Max-Former files name them."""
    out = {}
    for name, value in state_dict.items():
        m = re.match(r"(patch_embed\d)\.(\w+?)\.embed_(conv|bn)\.(.+)$", name)
        if m:
            pe, unit, kind, rest = m.groups()
            name = f"{pe}.{OLD_UNITS[pe][unit]}_{kind}.{rest}"
        out[name] = value
    return out


def assert_fixture_logits(directory):
    npz, _ = load_fixture("maxformer_small")
    model = from_preset(MaxFormer, directory)
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_reference_checkpoint_converts_with_and_without_preset(tmp_path):
    path = DATA / "maxformer_small.pth"
    state_dict = read_state_dict(path, progress=False)
    assert family_of_state_dict(state_dict)[0] is maxformer_weights
    inferred = convert_checkpoint(
        path,
        tmp_path / "inferred",
        num_timesteps=2,
        image_size=(64, 64),
        progress=False,
    )
    tensors = [k for k in state_dict if not k.endswith("num_batches_tracked")]
    assert inferred.by_position == [] and inferred.loaded == len(tensors)
    assert_fixture_logits(tmp_path / "inferred")
    named = convert_checkpoint(path, tmp_path / "preset", preset=TINY, progress=False)
    assert named.preset == TINY and named.by_position == []
    assert_fixture_logits(tmp_path / "preset")


def test_old_name_file_converts_by_position_with_a_report(tmp_path):
    npz, _ = load_fixture("maxformer_small")
    old = old_names(state_dict_of(npz))
    assert "patch_embed2.proj3_conv.weight" in old and maxformer_weights.recognises(old)
    path = tmp_path / "10-384-T4.npz"
    np.savez(path, **old)
    report = convert_checkpoint(path, tmp_path / "out", preset=TINY, progress=False)
    pairs = dict(report.by_position)
    # 10 conv units x (weight + 4 BN tensors), all inside patch_embed*.
    assert len(pairs) == 50
    assert pairs["patch_embed2.proj_res_bn.running_var"] == (
        "patch_embed2.max_embed2.embed_bn.running_var"
    )
    assert all(k.startswith("patch_embed") for k in pairs)
    assert "matched by position (50" in report.describe()
    assert_fixture_logits(tmp_path / "out")
    model = from_preset(MaxFormer, TINY)
    load = load_reference_weights(model, old)
    assert load.ok and "matched by position (50)" in load.describe()


@pytest.mark.parametrize(
    "name, where",
    [
        ("patch_embed2.proj4_bn.bias", "by position"),  # old name, matched by position
        ("stage2.1.mixer.conv.weight", "wrong shape"),  # current name, matched by name
    ],
)
def test_a_file_with_one_shape_wrong_is_refused(tmp_path, name, where):
    npz, _ = load_fixture("maxformer_small")
    old = old_names(state_dict_of(npz))
    old[name] = old[name][..., :-1]
    path = tmp_path / "bad.npz"
    np.savez(path, **old)
    with pytest.raises(ArchitectureError, match=re.escape(where)) as error:
        convert_checkpoint(path, tmp_path / "out", preset=TINY, progress=False)
    assert name in str(error.value)
    assert not (tmp_path / "out").exists()


def test_unknown_or_missing_old_names_are_refused():
    npz, _ = load_fixture("maxformer_small")
    model = from_preset(MaxFormer, TINY)
    old = old_names(state_dict_of(npz))
    with pytest.raises(ValueError, match="outside the patch embeddings"):
        load_reference_weights(model, {**old, "stage9.0.extra.weight": np.zeros(3)})
    del old["patch_embed3.proj_res_bn.bias"]
    with pytest.raises(ValueError, match="cannot be matched by position"):
        load_reference_weights(model, old)


def qkformer_imagenet_file(path):
    """A QKFormer ImageNet checkpoint (random weights), as the reference names it."""
    backbone = QKFormerBackbone(
        image_shape=(64, 64, 3), hidden_dim=64, stage_depths=(1, 1, 1), num_heads=1,
        num_timesteps=2, flavour="imagenet",
    )  # fmt: skip
    model = QKFormer(backbone, num_classes=10)
    state_dict = {}
    for name, variable in qkformer_weights.reference_variable_map(model).items():
        value = ops.convert_to_numpy(variable)
        state_dict[name] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    np.savez(path, **state_dict)
    return state_dict


def test_qkformer_file_is_refused_as_ms_qkformer_without_family(tmp_path, capsys):
    path = tmp_path / "qkformer.npz"
    qk = qkformer_imagenet_file(path)
    assert family_of_state_dict(qk)[0] is qkformer_weights
    assert not ms_qkformer_weights.recognises(qk)
    preset = "ms_qkformer_tiny_imagenet"
    with pytest.raises(ArchitectureError, match="--family"):
        convert_checkpoint(path, tmp_path / "refused", preset=preset, progress=False)
    with pytest.raises(ValueError, match="not an MS-QKFormer"):
        ms_qkformer_weights.infer_architecture(qk)
    # Said explicitly: every tensor fits (the two families share every shape).
    out = tmp_path / "out"
    code = cli(["convert", str(path), "-o", str(out), "--preset", preset,
                "--family", "ms_qkformer", "--no-progress"])  # fmt: skip
    assert code == 0 and "wrote preset" in capsys.readouterr().out
    model = from_preset(MSQKFormer, out)
    ours = ms_qkformer_weights.reference_variable_map(model)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(ours["patch_embed1.rpe_conv.weight"]),
        qk["patch_embed1.proj_res_conv.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(ours["stage1.0.attn.q_conv.weight"]),
        qk["stage1.0.tssa.q_conv.weight"].T,
    )
    with pytest.raises(ArchitectureError, match="Unknown family 'msqk'"):
        convert_checkpoint(path, tmp_path / "x", family="msqk", progress=False)
    with pytest.raises(ArchitectureError, match="cannot be read as maxformer"):
        convert_checkpoint(path, tmp_path / "x", family="maxformer", progress=False)
