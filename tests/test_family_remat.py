"""`remat=True` in every family after Spikformer: each unit recomputed, same step.

For each family, the tiniest backbone that has every kind of rematerialized
unit (stem stages, patch embeddings, downsampling layers, conv blocks and
every block type) takes one SGD(1) training step with and without `remat`:
the loss, the gradients (the weight change) and the batch-norm moving
statistics must be the same. Spikformer's own tests: `tests/test_remat.py`.
"""

import contextlib
from unittest import mock

import keras
import numpy as np
import pytest
from test_remat import batch  # 8 images, Spikformer's remat test's

from keras_spikformer import (
    ESpikeFormer,
    ESpikeFormerLarge,
    MaxFormer,
    MetaSpikeFormer,
    MSQKFormer,
    QKFormer,
    SpikeDrivenTransformer,
)
from keras_spikformer.layers import remat as remat_module
from keras_spikformer.models.e_spikeformer.e_spikeformer_backbone import (
    ESpikeFormerBaseBackbone,
    ESpikeFormerLargeBackbone,
)
from keras_spikformer.models.maxformer.maxformer_backbone import (
    MaxFormerBackbone,
    MSQKFormerBackbone,
)
from keras_spikformer.models.meta_spikeformer.meta_spikeformer_backbone import (
    MetaSpikeFormerBackbone,
)
from keras_spikformer.models.qkformer.qkformer_backbone import QKFormerBackbone
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_backbone import (
    SpikeDrivenTransformerBackbone,
)

# family: (classifier, backbone, tiniest config, rematerialized units, preset).
# Units: the calls that `rematerialize` sees in one training forward pass.
FAMILIES = {
    # Stem: stages 0-2 (2 pooled), stage 3 (pooled), RPE; one block.
    "sdt_v1": (
        SpikeDrivenTransformer, SpikeDrivenTransformerBackbone,
        dict(image_shape=(16, 16, 3), hidden_dim=16, num_layers=1, num_heads=2,
             num_timesteps=2, pooling="0011"),
        5 + 1, "sdt_tiny_cifar",
    ),
    # 5 downsampling layers, 4 conv blocks, a transformer block in stage 3.
    "meta_spikeformer": (
        MetaSpikeFormer, MetaSpikeFormerBackbone,
        dict(image_shape=(32, 32, 3), widths=(8, 8, 16, 16), num_heads=2,
             num_layers=(1, 0), num_timesteps=2),
        5 + 4 + 1, "meta_spikeformer_tiny_imagenet",
    ),
    # Stem: 2 conv units + shortcut; 2 stage embeddings of 2 units + shortcut;
    # token-attention blocks (stages 1, 2) and a self-attention block.
    "qkformer": (
        QKFormer, QKFormerBackbone,
        dict(image_shape=(16, 16, 3), hidden_dim=32, stage_depths=(1, 1, 1),
             num_heads=2, num_timesteps=2, flavour="cifar"),
        3 + 2 * 3 + 3, "qkformer_tiny_cifar",
    ),
    # Stem: conv0, conv1's neuron, conv1's synapse, conv2, shortcut; 2 stage
    # embeddings of neuron, synapse, unit, shortcut; DWC 7, DWC 5, SSA blocks.
    "maxformer": (
        MaxFormer, MaxFormerBackbone,
        dict(image_shape=(32, 32, 3), hidden_dim=32, stage_depths=(1, 1, 1),
             num_timesteps=2),
        5 + 2 * 4 + 3, "maxformer_tiny_imagenet",
    ),
    # Pooled stem, stride-2 shortcuts, Q-K token attention blocks.
    "ms_qkformer": (
        MSQKFormer, MSQKFormerBackbone,
        dict(image_shape=(32, 32, 3), hidden_dim=32, stage_depths=(1, 1, 1),
             num_heads=2, num_timesteps=2),
        5 + 2 * 4 + 3, "ms_qkformer_tiny_imagenet",
    ),
    # 5 downsampling layers, 4 SepConv conv blocks, a Base block in stage 3.
    "e_spikeformer": (
        ESpikeFormer, ESpikeFormerBaseBackbone,
        dict(image_shape=(32, 32, 3), widths=(8, 8, 16, 16), num_heads=2,
             num_layers=(1, 0)),
        5 + 4 + 1, "e_spikeformer_tiny_imagenet",
    ),
    # 4 downsampling layers, 4 conv blocks, 2 Large blocks with the rep
    # branch; the second drops paths (rate 0.5): remat must drop the same.
    "e_spikeformer_large": (
        ESpikeFormerLarge, ESpikeFormerLargeBackbone,
        dict(image_shape=(32, 32, 3), widths=(8, 8, 16), num_heads=2,
             num_layers=2, num_timesteps=2, drop_path_rate=0.5,
             rep_branch_width=16, use_rep_branch=True, layer_scale_init=0.5),
        4 + 4 + 2, "e_spikeformer_large_tiny_imagenet",
    ),
}  # fmt: skip

# Every family on every backend, in the quick loop and in CI: on JAX the two
# XLA-compiled train steps take 15-30 s per family, 200 s with the save/load
# checks for the 7 families and Spikformer's tests/test_remat.py (quiet 2-core
# Intel Xeon, AVX-512, 2026-12-07).


def build(family, remat):
    classifier, backbone, config, _, _ = FAMILIES[family]
    keras.utils.set_random_seed(0)
    model = classifier(backbone(**config, remat=remat), num_classes=3)
    # SGD with learning rate 1: the step subtracts the gradient itself.
    model.compile(
        optimizer=keras.optimizers.SGD(1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # TensorFlow and torch: eager (tf.recompute_grad and torch.utils.checkpoint
        # run as in graph mode, without seconds of tracing); JAX: XLA, where
        # the recomputation could be merged away (`jax_recompute`).
        run_eagerly=keras.backend.backend() != "jax",
        jit_compile=keras.backend.backend() == "jax",
    )
    return model


@contextlib.contextmanager
def counting_rematerialize():
    """Yields the list of the layer names that `rematerialize` is called with."""
    calls = []
    original = remat_module.rematerialize

    def counting(layer, call, *inputs):
        calls.append(layer.name)
        return original(layer, call, *inputs)

    with mock.patch.object(remat_module, "rematerialize", counting):
        yield calls


def one_step(family, remat):
    """The model, loss, weight change, moving statistics and rematerialized units."""
    model = build(family, remat)
    images, labels = batch(model)
    before = [np.array(v) for v in model.trainable_variables]
    # Eager (TensorFlow, torch) runs the step's Python once, XLA traces it once.
    with counting_rematerialize() as calls:
        loss = float(model.train_on_batch(images, labels, return_dict=True)["loss"])
    after = [np.array(v) for v in model.trainable_variables]
    grads = [b - a for b, a in zip(before, after, strict=True)]
    stats = {
        v.path: np.array(v) for v in model.non_trainable_variables if "moving" in v.path
    }
    return model, loss, grads, stats, calls


@pytest.fixture(scope="module", params=list(FAMILIES))
def steps(request):
    family = request.param
    return family, one_step(family, False), one_step(family, True)


def layers_after_input(model):
    return [
        layer
        for layer in model.backbone.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def remat_units(model):
    return [layer for layer in model.backbone.layers if getattr(layer, "remat", False)]


def test_remat_step_has_the_plain_loss_gradients_and_moving_statistics(steps):
    _, (_, loss, grads, stats, _), (_, remat_loss, remat_grads, remat_stats, _) = steps
    np.testing.assert_allclose(remat_loss, loss, rtol=1e-5)
    assert any(np.abs(g).max() > 0 for g in grads)
    for g, r in zip(grads, remat_grads, strict=True):
        # 1e-5 of the tensor's scale, plus float32 noise: biases before a batch
        # norm have a zero gradient, computed as ~1e-7 residues that depend on
        # the order of operations (graph mode), and `w - g` rounds to ~1e-7.
        np.testing.assert_allclose(r, g, rtol=0, atol=1e-5 * np.abs(g).max() + 2e-6)
    # One update moves the means away from 0; a second (the recomputation
    # assigning again) or none would give other values.
    assert stats.keys() == remat_stats.keys()
    means = [path for path in stats if "moving_mean" in path]
    moved = [path for path in means if np.abs(stats[path]).max() > 1e-3]
    assert len(moved) >= len(means) // 2, moved
    for path, value in stats.items():
        np.testing.assert_allclose(remat_stats[path], value, atol=1e-6, err_msg=path)


def test_every_unit_is_rematerialized_in_training(steps):
    family, (*_, plain_calls), (remat, *_, calls) = steps
    assert plain_calls == []
    assert len(calls) == FAMILIES[family][3], calls
    # Every backbone-level unit (stem, embeddings, blocks) is rematerialized.
    units = {layer.name for layer in remat_units(remat)}
    assert set(calls) == units
    assert units == {layer.name for layer in layers_after_input(remat)}


def test_remat_model_saves_and_loads(steps, tmp_path):
    _, _, (model, *_) = steps
    path = str(tmp_path / "remat.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.remat is True
    assert loaded.backbone.get_config()["remat"] is True
    assert [u.name for u in remat_units(loaded)] == [u.name for u in remat_units(model)]
    images, _ = batch(model)
    with counting_rematerialize() as calls:  # inference stores nothing anyway
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(loaded(images, training=False)),
            keras.ops.convert_to_numpy(model(images, training=False)),
            atol=1e-5,
        )
    assert calls == []


@pytest.mark.backend_independent
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_presets_take_remat_and_bad_values_name_the_fix(family):
    classifier, backbone, config, _, preset = FAMILIES[family]
    model = classifier.from_preset(preset, load_weights=False, preprocessor=None)
    assert model.backbone.remat is False and not remat_units(model)
    model = classifier.from_preset(
        preset, load_weights=False, preprocessor=None, remat=True
    )
    assert model.backbone.remat is True
    assert remat_units(model) == layers_after_input(model)
    with pytest.raises(ValueError, match="True or False"):
        backbone(**config, remat="blocks")
