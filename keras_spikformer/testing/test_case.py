"""Reusable checks that every layer and model of the zoo must pass."""

import keras
import numpy as np
from keras import ops


def run_serialization_test(layer):
    """`from_config(get_config())` and `keras.saving` (de)serialization give equal layers."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    return clone


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    run_training=True,
    run_mixed_precision=True,
    seed=0,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    allow_unchanged=(),
):
    """Builds, calls (symbolic and eager), round-trips and trains a layer.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        input_shape: full input shape, batch included.
        expected_output_shape: full output shape.
        run_training: fit one step of a tiny model around the layer and check
            that every trainable weight received a finite update.
        run_mixed_precision: build with `mixed_bfloat16` and check the dtypes.
        expected_num_trainable_weights: int or `None` (not checked).
        expected_num_non_trainable_weights: int or `None` (not checked).
        allow_unchanged: names (substrings of variable paths) of trainable
            weights that legitimately receive no update (e.g. a weight the
            reference builds but never applies).

    Returns:
        The built layer.

    Example:
    >>> run_layer_test(SpikingDense, {"units": 16}, (2, 3, 5, 8), (2, 3, 5, 16),
    ...     expected_num_trainable_weights=3)
    """
    layer = layer_cls(**init_kwargs)
    run_serialization_test(layer)

    symbolic = layer_cls(**init_kwargs)(keras.Input(batch_shape=input_shape))
    assert tuple(symbolic.shape) == tuple(expected_output_shape)

    x = keras.random.normal(input_shape, seed=seed) + 1.0
    eager = layer(x)
    assert tuple(eager.shape) == tuple(expected_output_shape)
    assert np.all(np.isfinite(ops.convert_to_numpy(eager)))
    assert tuple(layer.compute_output_shape(input_shape)) == tuple(
        expected_output_shape
    )
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, [
            w.path for w in layer.trainable_weights
        ]
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, [
            w.path for w in layer.non_trainable_weights
        ]

    if run_training:
        inputs = keras.Input(batch_shape=input_shape)
        trained = layer_cls(**init_kwargs)
        outputs = ops.mean(
            trained(inputs), axis=tuple(range(1, len(expected_output_shape)))
        )
        model = keras.Model(inputs, outputs)
        before = [ops.convert_to_numpy(w) for w in trained.trainable_weights]
        # XLA on TF and JAX; torch stays eager (torch.compile takes minutes on CPU).
        jit = keras.backend.backend() != "torch"
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", jit_compile=jit)
        model.fit(ops.convert_to_numpy(x), np.ones(input_shape[0]), epochs=1, verbose=0)
        after = [ops.convert_to_numpy(w) for w in trained.trainable_weights]
        unchanged = [
            w.path
            for w, a, b in zip(trained.trainable_weights, before, after, strict=True)
            if np.array_equal(a, b) and not any(n in w.path for n in allow_unchanged)
        ]
        assert not unchanged, f"trainable weights without an update: {unchanged}"
        assert all(np.all(np.isfinite(a)) for a in after)

    if run_mixed_precision:
        mixed = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
        out = mixed(x)
        assert ops.dtype(out) == "bfloat16"
        assert all(w.dtype == "float32" for w in mixed.weights)
    return layer


def run_model_saving_test(model, input_data, tmp_path):
    """`.keras` round trip: same class, same config, identical outputs.

    Returns:
        The reloaded model.
    """
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    expected = ops.convert_to_numpy(model(input_data, training=False))
    actual = ops.convert_to_numpy(restored(input_data, training=False))
    np.testing.assert_array_equal(actual, expected)
    return restored
