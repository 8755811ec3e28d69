"""Bad models and files: compact conversion reports, corrupt `.keras` weights."""

import keras
import numpy as np
import pytest
from conftest import DATA

from keras_spikformer.cli.main import main as cli
from keras_spikformer.training.trainer import build_model


def test_wrong_architecture_conversion_is_a_compact_report_in_torch_layout(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["convert", str(DATA / "cifar10_small.pth.tar"), "-o", str(out),
            "--preset", "spikformer_4_384_cifar10", "--no-progress"]  # fmt: skip
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) <= 12, err
    assert "wrong shape" in err and "missing" in err
    # Shapes in the checkpoint's own layout: conv [out, in, kh, kw].
    assert "patch_embed.proj_conv.weight: checkpoint [8, 3, 3, 3], model needs [48, 3, 3, 3]" in err
    assert "strict=False" not in err and "--preset" in err
    assert not out.exists()


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated"])
def test_corrupt_keras_file_given_as_weights_is_reported_as_corrupt(tmp_path, content):
    path = tmp_path / "broken.keras"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt"):
        build_model("spikformer_tiny_digits", weights=str(path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_model("spikformer_tiny_digits", weights=str(tmp_path / "absent.keras"))


def test_keras_file_of_another_architecture_keeps_what_fits(tmp_path):
    source = build_model("spikformer_tiny_cifar")  # 3-channel stem, else as digits
    source.save(tmp_path / "cifar.keras")
    with pytest.warns(UserWarning) as caught:
        model = build_model("spikformer_tiny_digits", weights=str(tmp_path / "cifar.keras"))
    assert "['patch_embed/stage_0/conv/kernel']" in str(caught[0].message)
    head = {w.path: w for w in model.weights}["head/kernel"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(head), keras.ops.convert_to_numpy(source.head.kernel)
    )


@pytest.mark.backend_independent
def test_convert_cli_has_the_family_options():
    from keras_spikformer.cli.main import build_parser

    args = build_parser().parse_args(
        ["convert", "ckpt.pth", "-o", "out", "--pooling", "0011", "--erode",
         "--flavour", "cifar", "--distillation-head"]  # fmt: skip
    )
    assert (args.pooling, args.erode, args.flavour, args.distillation_head) == (
        "0011", True, "cifar", True)  # fmt: skip
    plain = build_parser().parse_args(["convert", "ckpt.pth", "-o", "out"])
    assert plain.erode is None and plain.distillation_head is None
