import keras
import numpy as np
import pytest
from keras import ops

from keras_spikformer import (
    DirectEncoding,
    SpikformerBlock,
    SpikingConv2D,
    SpikingDense,
    SpikingMLP,
    SpikingPatchSplitting,
    SpikingSelfAttention,
    record_spikes,
)
from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.max_pool import max_pool_3x3_s2
from keras_spikformer.testing import run_layer_test, vector_jacobian

NEURON = {"tau": 2.0, "surrogate": "sigmoid"}


@pytest.mark.parametrize(
    "cls, kwargs, input_shape, output_shape",
    [
        (SpikingDense, {"units": 16, "use_bias": False}, (2, 3, 5, 8), (2, 3, 5, 16)),
        (SpikingConv2D, {"filters": 8}, (2, 2, 8, 8, 3), (2, 2, 8, 8, 8)),
        (
            SpikingSelfAttention,
            # A low attention threshold so that every path spikes on random input
            # (at 0.5 the tiny layer's attention neuron stays silent: no gradient).
            {
                "hidden_dim": 16,
                "num_heads": 2,
                "neuron_config": NEURON,
                "attention_v_threshold": 0.05,
            },
            (4, 2, 32, 16),
            (4, 2, 32, 16),
        ),
        (
            SpikingMLP,
            {"hidden_dim": 16, "mlp_ratio": 2.0},
            (2, 2, 4, 16),
            (2, 2, 4, 16),
        ),
        (
            SpikformerBlock,
            {
                "hidden_dim": 16,
                "num_heads": 4,
                "qkv_bias": True,
                "attention_v_threshold": 0.05,
            },
            (4, 2, 32, 16),
            (4, 2, 32, 16),
        ),
        (
            SpikingPatchSplitting,
            {"hidden_dim": 16, "patch_size": 4},
            (2, 2, 16, 16, 3),
            (2, 2, 16, 16),
        ),
        (
            SpikingPatchSplitting,
            {"hidden_dim": 16, "patch_size": 16},
            (1, 2, 32, 32, 2),
            (1, 2, 4, 16),
        ),
        (DirectEncoding, {"num_timesteps": 3}, (2, 8, 8, 3), (2, 3, 8, 8, 3)),
    ],
)
def test_layer_contract(cls, kwargs, input_shape, output_shape):
    run_layer_test(
        cls, kwargs, input_shape, output_shape, run_training=cls is not DirectEncoding
    )


def _binary(shape, seed):
    return (np.random.default_rng(seed).random(shape) < 0.3).astype("float32")


def test_attention_product_orders_are_bit_identical():
    q, k, v = (_binary((3, 2, 20, 8), s) for s in range(3))
    kt = np.swapaxes(k, -1, -2)
    left = ops.matmul(ops.matmul(q, kt), v)
    right = ops.matmul(q, ops.matmul(kt, v))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(left), ops.convert_to_numpy(right)
    )


@pytest.mark.parametrize("num_tokens", [4, 64])  # N < head size and N > head size
def test_attention_matches_numpy_reference(num_tokens):
    layer = SpikingSelfAttention(hidden_dim=32, num_heads=2, qkv_bias=True)
    x = _binary((2, 2, num_tokens, 32), 5) * 2
    with record_spikes() as record:
        out = ops.convert_to_numpy(layer(x))
    q, k, v = (ops.convert_to_numpy(record.last(getattr(layer, n).lif)) for n in "qkv")

    def heads(t):
        return t.reshape(t.shape[:3] + (2, 16)).transpose(0, 1, 3, 2, 4)

    attn = heads(q) @ np.swapaxes(heads(k), -1, -2) @ heads(v) * 0.125
    merged = attn.transpose(0, 1, 3, 2, 4).reshape(x.shape)
    attn_spikes = ops.convert_to_numpy(layer.attn_lif(merged))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(record.last(layer.attn_lif)), attn_spikes
    )
    np.testing.assert_array_equal(out, ops.convert_to_numpy(layer.proj(attn_spikes)))


def test_max_pool_matches_pytorch_windows_and_gradient():
    # PyTorch MaxPool2d(3, 2, padding=1) on a 4x4 ramp: windows centred on
    # even rows/columns, so outputs come from rows/cols {1, 3}.
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    out = ops.convert_to_numpy(max_pool_3x3_s2(x))[0, :, :, 0]
    np.testing.assert_array_equal(out, [[5, 7], [13, 15]])
    # An all-zero window (spikes never negative) must send its gradient to a
    # real pixel, never to the padding.
    if keras.backend.backend() == "jax":
        import jax

        grad = np.asarray(
            jax.grad(lambda t: max_pool_3x3_s2(t).sum())(np.zeros_like(x))
        )
        assert grad.sum() == 4.0


def test_bad_layer_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="divisible by `num_heads`"):
        SpikingSelfAttention(hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="divisible by 8"):
        SpikingPatchSplitting(hidden_dim=36)
    with pytest.raises(ValueError, match="power of two"):
        SpikingPatchSplitting(hidden_dim=32, patch_size=6)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        SpikingPatchSplitting(hidden_dim=32, patch_size=4)(
            np.zeros((1, 2, 18, 16, 3), "float32")
        )
    with pytest.raises(ValueError, match="num_timesteps"):
        DirectEncoding(0)


@pytest.mark.parametrize("training", [False, True])
def test_static_stem_equals_repeating_the_image(training):
    """Direct encoding folded into the stem: first conv and BN once, same spikes."""
    images = np.random.default_rng(4).normal(size=(2, 16, 16, 3)).astype("float32")
    folded = SpikingPatchSplitting(hidden_dim=16, patch_size=4, num_timesteps=3)
    repeated = SpikingPatchSplitting(hidden_dim=16, patch_size=4)
    folded.build(images.shape)
    repeated.build((2, 3, 16, 16, 3))
    repeated.set_weights(folded.get_weights())
    ours = folded(images, training=training)
    reference = repeated(DirectEncoding(3)(images), training=training)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ours), ops.convert_to_numpy(reference), rtol=0, atol=1e-6
    )
    if training:  # batch statistics over T identical copies == over the batch
        for a, b in zip(
            folded.non_trainable_weights, repeated.non_trainable_weights, strict=True
        ):
            np.testing.assert_allclose(
                ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6
            )


def pytorch_max_pool(x, upstream):
    """Numpy MaxPool2d(3, 2, 1): forward and PyTorch's first-argmax backward."""
    n, h, w, c = x.shape
    out = np.zeros((n, (h + 1) // 2, (w + 1) // 2, c), x.dtype)
    grad = np.zeros_like(x)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            best = np.full((n, c), -np.inf, x.dtype)
            rows, cols = np.zeros((n, c), int), np.zeros((n, c), int)
            for r in range(2 * i - 1, 2 * i + 2):
                for q in range(2 * j - 1, 2 * j + 2):
                    if 0 <= r < h and 0 <= q < w:
                        better = x[:, r, q, :] > best  # strict: first max wins
                        best = np.where(better, x[:, r, q, :], best)
                        rows, cols = (
                            np.where(better, r, rows),
                            np.where(better, q, cols),
                        )
            out[:, i, j] = best
            np.add.at(grad, (nn, rows, cols, cc), upstream[:, i, j])
    return out, grad


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 2)])
def test_max_pool_ties_route_gradient_like_pytorch(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype("float32")  # spike counts: many ties
    out_shape = (shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2, shape[3])
    upstream = rng.normal(size=out_shape).astype("float32")
    expected_out, expected_grad = pytorch_max_pool(x, upstream)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(max_pool_3x3_s2(x)), expected_out
    )
    grad, _ = vector_jacobian(max_pool_3x3_s2, x, upstream)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch layout")
def test_max_pool_on_torch_keeps_the_channels_last_layout():
    # Pooled in torch's channels_last format: the result is a plain contiguous
    # [B, H, W, C] tensor, with no transposing copies on either side.
    x = ops.convert_to_tensor(np.random.default_rng(0).random((2, 8, 8, 5)), "float32")
    y = max_pool_3x3_s2(x)
    assert tuple(y.shape) == (2, 4, 4, 5) and y.is_contiguous()


def test_batch_norm_training_step_equals_keras_batch_normalization():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 2.0, (6, 5, 7)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    ours = BatchNorm()
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (ours, reference):
        layer.build(x.shape)
    weights = [rng.normal(size=(7,)).astype("float32") for _ in range(2)]
    weights += [rng.normal(size=(7,)).astype("float32"), rng.uniform(1, 2, 7)]
    for layer in (ours, reference):
        layer.set_weights(weights)
    results = [
        vector_jacobian(lambda t, bn=layer: bn(t, training=True), x, upstream, layer)
        for layer in (ours, reference)
    ]
    (dx, dvars), (ref_dx, ref_dvars) = results
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
    for got, want in zip(dvars, ref_dvars, strict=True):  # gamma, beta
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ours(x, training=True)),
        ops.convert_to_numpy(reference(x, training=True)),
        rtol=1e-5,
        atol=1e-5,
    )
    for got, want in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # moving stats
    np.testing.assert_allclose(
        ops.convert_to_numpy(ours(x)), ops.convert_to_numpy(reference(x)), atol=1e-6
    )
