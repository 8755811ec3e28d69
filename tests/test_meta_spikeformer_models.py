"""Meta-SpikeFormer layers, backbone, classifier, presets and converter checks (tiny configs)."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer.convert import load_reference_weights
from keras_spikformer.convert import meta_spikeformer_weights as weights
from keras_spikformer.convert.families import family_of_state_dict
from keras_spikformer.models.image_classifier import ImageClassifier
from keras_spikformer.models.meta_spikeformer import (
    MetaSpikeFormer,
    MetaSpikeFormerAttention,
    MetaSpikeFormerBackbone,
    MetaSpikeFormerBlock,
    MetaSpikeFormerBNAndPad,
    MetaSpikeFormerConvBlock,
    MetaSpikeFormerDownsampling,
    MetaSpikeFormerMLP,
    MetaSpikeFormerRepConv,
    MetaSpikeFormerSepConv,
)
from keras_spikformer.testing import (
    run_backbone_test,
    run_layer_test,
    run_preset_test,
    run_serialization_test,
    run_task_test,
    vector_jacobian,
)

TINY = {
    "image_shape": (32, 32, 3),
    "widths": (8, 8, 16, 16),
    "num_heads": 4,
    "num_layers": (1, 1),
    "num_timesteps": 2,
}


def images(batch=2, size=32, seed=0):
    return (
        np.random.default_rng(seed)
        .normal(size=(batch, size, size, 3))
        .astype("float32")
    )


def tiny_state_dict(model):
    """A reference-named state dict holding `model`'s own weights."""
    out = {}
    for name, variable in weights.reference_variable_map(model).items():
        array = ops.convert_to_numpy(variable)
        if name.endswith(("body.2.0.weight", "dwconv.weight")):
            out[name] = array.transpose(2, 3, 0, 1)  # depthwise -> [C, 1, kh, kw]
        elif array.ndim == 4:
            out[name] = array.transpose(3, 2, 0, 1)
        elif array.ndim == 2:
            out[name] = array.T
        else:
            out[name] = array
    return out


@pytest.mark.parametrize(
    "layer",
    [
        MetaSpikeFormerBNAndPad(2),
        MetaSpikeFormerRepConv(16),
        MetaSpikeFormerSepConv(neuron_config={"tau": 3.0}),
        MetaSpikeFormerConvBlock(),
        MetaSpikeFormerDownsampling(16, 7, 2, 3, first_layer=True, num_timesteps=2),
        MetaSpikeFormerAttention(4, attention_v_threshold=0.25),
        MetaSpikeFormerMLP(2.0),
        MetaSpikeFormerBlock(4, 2.0),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layer_configs_round_trip(layer):
    run_serialization_test(layer)


@pytest.mark.large
def test_block_builds_trains_and_runs_mixed_precision():
    # Random inputs rarely reach the attention gate (threshold 0.5 on counts
    # x 0.125 over 16 tokens), so the projection after it may get no update.
    run_layer_test(
        MetaSpikeFormerBlock,
        {"num_heads": 4},
        input_shape=(2, 2, 4, 4, 16),
        expected_output_shape=(2, 2, 4, 4, 16),
        allow_unchanged=("proj_conv", "proj_bn"),
    )


def test_conv_block_and_downsampling_shapes():
    x = keras.random.normal((2, 2, 8, 8, 8), seed=1)
    assert tuple(MetaSpikeFormerConvBlock()(x).shape) == (2, 2, 8, 8, 8)
    # Symmetric padding: 3x3 stride 2 pad 1 halves 8 -> 4; stride 1 keeps it.
    assert tuple(MetaSpikeFormerDownsampling(16)(x).shape) == (2, 2, 4, 4, 16)
    assert tuple(MetaSpikeFormerDownsampling(16, strides=1)(x).shape) == (
        2,
        2,
        8,
        8,
        16,
    )
    stem = MetaSpikeFormerDownsampling(4, 7, 2, 3, first_layer=True, num_timesteps=3)
    assert tuple(stem(images()).shape) == (2, 3, 16, 16, 4)


def test_bn_and_pad_border_is_bn_of_zero_without_gradient_to_gamma_beta():
    layer = MetaSpikeFormerBNAndPad(1)
    layer.build((2, 3, 3, 4))
    layer.bn.gamma.assign([1.0, 2.0, 0.5, 1.5])
    layer.bn.beta.assign([0.1, -0.2, 0.3, 0.0])
    layer.bn.moving_mean.assign([0.5, -1.0, 2.0, 0.0])
    layer.bn.moving_variance.assign([1.0, 4.0, 0.25, 2.0])
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    y = ops.convert_to_numpy(layer(x, training=False))
    bn0 = np.array([0.1, -0.2, 0.3, 0.0]) - np.array([0.5, -1.0, 2.0, 0.0]) * np.array(
        [1.0, 2.0, 0.5, 1.5]
    ) / np.sqrt(np.array([1.0, 4.0, 0.25, 2.0]) + 1e-5)
    border = np.ones((5, 5), bool)
    border[1:-1, 1:-1] = False
    np.testing.assert_allclose(
        y[:, border], np.broadcast_to(bn0, (2, 16, 4)), atol=1e-6
    )
    np.testing.assert_array_equal(y[:, 1:-1, 1:-1], ops.convert_to_numpy(layer.bn(x)))
    # Upstream gradient on the border only: gamma and beta get none from it.
    upstream = np.zeros((2, 5, 5, 4), "float32")
    upstream[:, border] = 1.0
    _, (d_gamma, d_beta) = vector_jacobian(
        lambda t: layer(t, training=False), x, upstream, layer=layer
    )
    np.testing.assert_array_equal(d_gamma, 0.0)
    np.testing.assert_array_equal(d_beta, 0.0)


def test_backbone_shapes_and_round_trips(tmp_path):
    run_backbone_test(
        MetaSpikeFormerBackbone, TINY, images(), (2, 2, 2, 2, 16), tmp_path
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"widths": (8, 8, 18, 16)}, "not divisible by num_heads"),
        ({"widths": (8, 8, 16, 18)}, "not divisible by num_heads"),
        ({"image_shape": (40, 32, 3)}, "not divisible by 16"),
        ({"widths": (7, 8, 16, 16)}, "must be even"),
        ({"num_layers": (1,)}, "two counts"),
        ({"num_timesteps": 0}, "num_timesteps"),
    ],
)
def test_bad_architecture_is_refused_with_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        MetaSpikeFormerBackbone(**{**TINY, **overrides})


@pytest.mark.large
def test_classifier_fits_and_round_trips(tmp_path):
    """XLA `fit` (minutes of compilation on a loaded 2-core CPU), `.keras` and preset."""
    backbone = MetaSpikeFormerBackbone(**TINY)
    labels = np.array([0, 1, 2, 1])
    run_task_test(
        MetaSpikeFormer,
        {"backbone": backbone, "num_classes": 3},
        (images(4), labels),
        tmp_path,
    )


def test_distillation_head_training_returns_both_inference_their_mean(tmp_path):
    model = MetaSpikeFormer(MetaSpikeFormerBackbone(**TINY), 5, distillation_head=True)
    x = images()
    logits, logits_kd = model(x, training=True)
    assert tuple(logits.shape) == tuple(logits_kd.shape) == (2, 5)
    assert tuple(model(keras.Input((32, 32, 3))).shape) == (None, 5)
    # Inference (fresh forward; BN moving statistics unchanged since by design
    # training reads batch statistics): the mean of the two heads.
    model_eval = MetaSpikeFormer.from_config(model.get_config())
    model_eval.set_weights(model.get_weights())
    outputs = ImageClassifier.call(model_eval, x, training=False)  # both heads
    mean = ops.convert_to_numpy(model_eval(x, training=False))
    np.testing.assert_allclose(
        mean, (ops.convert_to_numpy(outputs[0]) + ops.convert_to_numpy(outputs[1])) / 2,
        atol=1e-6,
    )  # fmt: skip
    path = tmp_path / "kd.keras"
    model_eval.save(path)
    restored = keras.saving.load_model(path)
    assert restored.distillation_head
    np.testing.assert_array_equal(ops.convert_to_numpy(restored(x)), mean)


def test_tiny_preset_runs():
    model = run_preset_test(
        MetaSpikeFormer, "meta_spikeformer_tiny_imagenet", images(size=64), (2, 10),
        num_layers=(1, 1),
    )  # fmt: skip
    assert model.backbone.widths == (8, 8, 16, 16)


def test_checkpoint_head_kd_must_match_the_option():
    with_kd = MetaSpikeFormer(
        MetaSpikeFormerBackbone(**TINY), 3, distillation_head=True
    )
    without = MetaSpikeFormer(MetaSpikeFormerBackbone(**TINY), 3)
    state_kd, state = tiny_state_dict(with_kd), tiny_state_dict(without)
    assert family_of_state_dict(state_kd)[0].FAMILY == "meta_spikeformer"
    with pytest.raises(ValueError, match="distillation_head=True"):
        load_reference_weights(without, state_kd)
    with pytest.raises(ValueError, match="has no `head_kd`"):
        load_reference_weights(with_kd, state)
    # The T=1 -> T=4 fine-tune: non-strict keeps a fresh head_kd.
    report = load_reference_weights(with_kd, state, strict=False)
    assert report.missing == ["head_kd.bias", "head_kd.weight"]
    report = load_reference_weights(with_kd, state_kd)
    assert report.ok and not report.missing
    config, classes, notes = weights.infer_architecture(state_kd, num_heads=4)
    assert config["distillation_head"] is True and classes == 3
    assert config["num_layers"] == [1, 1] and config["widths"] == [8, 8, 16, 16]


def test_checkpoint_of_another_family_is_refused():
    model = MetaSpikeFormer(MetaSpikeFormerBackbone(**TINY), 3)
    spikformer_like = {
        "patch_embed.proj_conv.weight": np.zeros((8, 3, 3, 3), "float32"),
        "block.0.attn.q_conv.weight": np.zeros((8, 8, 1), "float32"),
        "head.weight": np.zeros((3, 8), "float32"),
    }
    with pytest.raises(ValueError, match="meta_spikeformer model"):
        load_reference_weights(model, spikformer_like)
    with pytest.raises(ValueError, match="not a reference Meta-SpikeFormer"):
        weights.infer_architecture(spikformer_like)


def test_channels_first_input_is_refused():
    backbone = MetaSpikeFormerBackbone(**TINY)
    with pytest.raises(ValueError, match="channels-first"):
        backbone(np.zeros((2, 3, 32, 32), "float32"))


PAPER_COUNTS = {
    "meta_spikeformer_15m_imagenet": (15_112_208, 15_473_208),
    "meta_spikeformer_31m_imagenet": (31_333_864, 31_814_864),
    "meta_spikeformer_55m_imagenet": (55_350_248, 55_991_248),
}


@pytest.mark.large
@pytest.mark.backend_independent  # the variables a layer creates do not depend on the backend
@pytest.mark.parametrize("preset", sorted(PAPER_COUNTS))
def test_preset_parameter_counts_equal_the_reference(preset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MetaSpikeFormer.from_preset(preset, load_weights=False, num_timesteps=1)
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    classes, width = model.num_classes, model.backbone.widths[3]
    assert count == PAPER_COUNTS[preset][0]
    # head_kd adds one more Linear(E3, classes).
    assert count + width * classes + classes == PAPER_COUNTS[preset][1]
