"""QKFormer layers, backbone, classifier, presets and converter."""

import warnings

import keras
import numpy as np
import pytest
from conftest import DATA, images_of, load_fixture, state_dict_of
from keras import ops

from keras_spikformer import LIFNeuron
from keras_spikformer.convert import (
    convert_checkpoint,
    load_reference_weights,
    qkformer_weights,
)
from keras_spikformer.convert.checkpoint_files import read_state_dict
from keras_spikformer.models.qkformer import (
    BatchSpanningLIFNeuron,
    QKFormer,
    QKFormerBackbone,
    QKFormerBlock,
    QKFormerConvUnit,
    QKFormerDownsampling,
    QKFormerPatchEmbedding,
    QKTokenAttention,
)
from keras_spikformer.models.qkformer.qkformer_attention import UNROLLED_STEPS
from keras_spikformer.preset_builder import count_trainable_params
from keras_spikformer.testing import (
    run_layer_test,
    run_model_saving_test,
    vector_jacobian,
)

# Spec table (successors/qkformer.md, section 5): the reference code's counts.
PAPER_PARAMS = {
    "qkformer_10_384_imagenet": 16_473_688,
    "qkformer_10_512_imagenet": 29_079_336,
    "qkformer_10_768_imagenet": 64_962_760,
    "qkformer_4_384_cifar10": 6_706_234,
    "qkformer_4_384_cifar100": 6_740_884,
    "qkformer_2_256_cifar10dvs": 1_504_138,
    "qkformer_2_256_dvsgesture": 1_999_371,
}
TINY = dict(image_shape=(32, 32, 3), hidden_dim=32, stage_depths=(1, 1, 1),
            num_heads=4, num_timesteps=2)  # fmt: skip


def tiny(name="qkformer_tiny_cifar", **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return QKFormer.from_preset(name, **overrides)


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape",
    [
        (QKTokenAttention, {"hidden_dim": 16, "num_heads": 4}, (2, 2, 4, 4, 16), (2, 2, 4, 4, 16)),
        (QKFormerConvUnit, {"filters": 8, "pool": True}, (2, 2, 8, 8, 3), (2, 2, 4, 4, 8)),
        (QKFormerConvUnit, {"filters": 8, "kernel_size": 1, "strides": 4}, (2, 2, 8, 8, 4), (2, 2, 2, 2, 8)),
        (QKFormerPatchEmbedding, {"hidden_dim": 16, "flavour": "imagenet"}, (2, 2, 16, 16, 3), (2, 2, 4, 4, 16)),
        (QKFormerPatchEmbedding, {"hidden_dim": 16, "flavour": "cifar", "num_timesteps": 2}, (2, 8, 8, 3), (2, 2, 8, 8, 16)),
        (QKFormerPatchEmbedding, {"hidden_dim": 16, "flavour": "dvs"}, (2, 2, 16, 16, 2), (2, 2, 2, 2, 16)),
        (QKFormerDownsampling, {"hidden_dim": 16, "flavour": "imagenet"}, (2, 2, 8, 8, 8), (2, 2, 4, 4, 16)),
        (QKFormerDownsampling, {"hidden_dim": 16, "flavour": "dvs"}, (2, 2, 8, 8, 8), (2, 2, 4, 4, 16)),
        (QKFormerBlock, {"hidden_dim": 16, "num_heads": 4}, (2, 2, 4, 4, 16), (2, 2, 4, 4, 16)),
        (QKFormerBlock, {"hidden_dim": 16, "num_heads": 2, "attention": "self"}, (2, 2, 8, 8, 16), (2, 2, 8, 8, 16)),
    ],
)  # fmt: skip
def test_layer_contract(cls, kwargs, input_shape, output_shape):
    # With random inputs the 0.5 attention gate of a toy self-attention stays
    # silent, so its projection's kernel and gamma get no gradient (the fixture
    # test checks those gradients with firing gates).
    silent = ("attn/proj",) if kwargs.get("attention") == "self" else ()
    run_layer_test(
        cls, kwargs, input_shape, output_shape,
        run_training=cls is QKFormerBlock, allow_unchanged=silent,
    )  # fmt: skip


# Batch 3 (12 steps) is unrolled; batch 10 (40 steps) is longer than
# UNROLLED_STEPS, a scan on JAX: both are the same neuron.
@pytest.mark.parametrize("batch", [3, 10])
def test_batch_spanning_neuron_steps_through_time_major_batch(batch):
    """Equal to a LIF run over the `(t0, b0), (t0, b1), ..., (t1, b0)` sequence."""
    steps = 4 * batch
    assert (steps > UNROLLED_STEPS) == (batch == 10)
    x = np.random.default_rng(0).normal(0.8, 1.0, (batch, 4, 5)).astype("float32")
    upstream = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    sequence = np.swapaxes(x, 0, 1).reshape(1, steps, 5)  # [1, T*B, ...], T-major
    to_sequence = lambda y: ops.reshape(ops.transpose(y, (1, 0, 2)), (1, steps, 5))  # noqa: E731

    spanning, plain = BatchSpanningLIFNeuron(), LIFNeuron()
    ours = ops.convert_to_numpy(to_sequence(spanning(x)))
    np.testing.assert_array_equal(ours, ops.convert_to_numpy(plain(sequence)))
    assert 0 < ours.mean() < 1

    grad, _ = vector_jacobian(spanning, x, upstream)
    up_seq = np.swapaxes(upstream, 0, 1).reshape(1, steps, 5)
    grad_seq, _ = vector_jacobian(plain, sequence, up_seq)
    np.testing.assert_allclose(
        np.swapaxes(grad, 0, 1).reshape(1, steps, 5), grad_seq, rtol=1e-6, atol=1e-7
    )


def test_batch_spanning_projection_couples_samples_only_when_asked():
    npz, _ = load_fixture("qkformer_small")
    x = images_of(npz)
    for spanning in (True, False):
        model = tiny(preprocessor=None, batch_spanning_projection=spanning)
        load_reference_weights(model, state_dict_of(npz))
        pair = ops.convert_to_numpy(model(x, training=False))
        alone = ops.convert_to_numpy(model(x[1:], training=False))
        # The second sample's projection neuron starts from the first's state.
        assert np.array_equal(pair[1:], alone) != spanning
        if spanning:
            np.testing.assert_allclose(pair, npz["logits"], rtol=0, atol=1e-5)


def test_tiny_preset_matches_the_fixture_configuration():
    model = tiny()
    _, config = load_fixture("qkformer_small")
    assert count_trainable_params(model) == config["params_total"]
    assert model.backbone.flavour == "cifar" and model.backbone.num_timesteps == 2


def test_zoo_lists_every_paper_preset_with_its_parameter_count():
    presets = QKFormer.presets
    assert set(PAPER_PARAMS) | {"qkformer_tiny_cifar"} <= set(presets)
    for name, count in PAPER_PARAMS.items():
        assert presets[name]["trainable_params"] == count
        assert presets[name]["paper"]["top1_accuracy"] > 0
    higher = presets["qkformer_10_768_imagenet"]["paper"]["higher_resolution"]
    assert [h["image_size"] for h in higher] == [288, 384]


@pytest.mark.large
@pytest.mark.backend_independent  # the variables a layer creates do not depend on the backend
@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_preset_parameter_counts(name):
    model = QKFormer.from_preset(name, load_weights=False)
    assert count_trainable_params(model) == PAPER_PARAMS[name]


def test_keras_file_round_trip(tmp_path):
    model = tiny(preprocessor=None)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    restored = run_model_saving_test(model, x, tmp_path)
    assert isinstance(restored.backbone, QKFormerBackbone)


def test_preset_round_trip_and_larger_images_keep_every_weight(tmp_path):
    keras.utils.set_random_seed(5)
    backbone = QKFormerBackbone(**{**TINY, "image_shape": (32, 32, 3)}, flavour="imagenet")
    model = QKFormer(backbone, num_classes=3)
    model.save_to_preset(tmp_path / "p")
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a weight left behind would warn
        same = QKFormer.from_preset(tmp_path / "p")
        bigger = QKFormer.from_preset(tmp_path / "p", image_shape=(48, 48, 3))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(same(x, training=False)),
        ops.convert_to_numpy(model(x, training=False)),
    )
    assert bigger.backbone.image_shape == (48, 48, 3)
    for a, b in zip(bigger.weights, model.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    assert bigger(np.zeros((1, 48, 48, 3)), training=False).shape == (1, 3)


def test_mixed_bfloat16_builds_and_runs():
    model = tiny(preprocessor=None, dtype="mixed_bfloat16")
    out = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert ops.dtype(out) == "float32"
    assert all(w.dtype == "float32" for w in model.weights)


@pytest.mark.large
def test_fit_with_xla_trains_the_tiny_preset():
    model = tiny(preprocessor=None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 32, 32, 3)).astype("float32")
    y = np.arange(8) % 10
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=keras.backend.backend() != "torch",  # torch.compile: minutes
    )
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_event_frame_flavour_takes_frames():
    backbone = QKFormerBackbone(
        image_shape=(32, 32, 2), hidden_dim=32, stage_depths=(1, 1), num_heads=4,
        num_timesteps=2, flavour="dvs", encoding="frames", mlp_ratio=1,
    )  # fmt: skip
    assert backbone(np.zeros((1, 2, 32, 32, 2)), training=False).shape == (1, 2, 2, 2, 32)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"flavour": "dvs"}, "2 positive block counts"),
        ({"stage_depths": (1, 1)}, "3 positive block counts"),
        ({"stage_depths": (1, 0, 1)}, "stage_depths[1]"),
        ({"num_heads": 3}, "must divide every stage width"),
        ({"image_shape": (36, 36, 3), "flavour": "imagenet"}, "not divisible by 16"),
        ({"hidden_dim": 36}, "multiple of 8"),
        ({"flavour": "vit"}, "`flavour` must be one of"),
        ({"num_timesteps": 0}, "num_timesteps"),
    ],
)
def test_impossible_configs_fail_before_building(overrides, message):
    config = {**TINY, "flavour": "cifar", **overrides}
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        QKFormerBackbone(**config)


def test_checkpoint_of_another_family_is_refused():
    npz, _ = load_fixture("cifar10_small")  # a Spikformer checkpoint
    spikformer = state_dict_of(npz)
    assert not qkformer_weights.recognises(spikformer)
    with pytest.raises(ValueError, match="not a QKFormer"):
        qkformer_weights.infer_architecture(spikformer)
    with pytest.raises(ValueError, match="qkformer model"):
        load_reference_weights(tiny(preprocessor=None), spikformer)


def test_given_arguments_that_contradict_the_checkpoint_are_named():
    npz, _ = load_fixture("qkformer_small")
    with pytest.raises(ValueError, match="hidden_dim=128"):
        qkformer_weights.infer_architecture(state_dict_of(npz), hidden_dim=128)


def test_released_style_checkpoint_converts_without_torch(tmp_path):
    npz, config = load_fixture("qkformer_small")
    path = DATA / "qkformer_small.pth.tar"
    state_dict = read_state_dict(path, progress=False)
    assert qkformer_weights.recognises(state_dict)
    report = convert_checkpoint(path, tmp_path / "out", num_timesteps=config["T"], progress=False)
    assert report.provenance["flavour"] == "checkpoint tensor names/shapes"
    model = tiny(tmp_path / "out")
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_mae_style_checkpoint_dict_is_read(tmp_path):
    """ImageNet checkpoints are MAE-style `{'model': state_dict, 'optimizer', ...}`."""
    torch = pytest.importorskip("torch")  # only to write the file; reading is torch-free
    npz, _ = load_fixture("qkformer_small")
    state_dict = {k: torch.from_numpy(np.array(v)) for k, v in state_dict_of(npz).items()}
    path = tmp_path / "checkpoint-199.pth"
    torch.save({"model": state_dict, "epoch": 199, "scaler": {}}, path)
    model = tiny(preprocessor=None)
    report = load_reference_weights(model, read_state_dict(path, progress=False))
    assert report.ok and len(report.loaded) == len(qkformer_weights.reference_variable_map(model))
    logits = ops.convert_to_numpy(model(images_of(npz), training=False))
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-5)


def test_imagenet_recipe_is_mae_style_warmup_then_half_cosine():
    from keras_spikformer.training.recipe import Recipe

    recipe = Recipe.from_preset("qkformer_10_768_imagenet")
    assert recipe.warmup_prefix and recipe.extras["layer_decay"] == 1.0
    schedule = recipe.make_schedule(steps_per_epoch=10)  # 5 warm-up + 195 cosine epochs
    lr, floor = recipe.learning_rate, recipe.min_learning_rate
    at = lambda step: float(ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert at(0) == 0.0
    np.testing.assert_allclose(at(25), lr / 2, rtol=1e-6)
    np.testing.assert_allclose(at(50), lr, rtol=1e-6)
    np.testing.assert_allclose(at(50 + 975), (lr + floor) / 2, rtol=1e-5)
    np.testing.assert_allclose(at(2000), floor, rtol=1e-5)
