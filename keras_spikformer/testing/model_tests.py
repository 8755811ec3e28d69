"""Reusable checks for backbones, classifiers and presets (KerasHub-style helpers)."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_spikformer.testing.test_case import run_model_saving_test


def _numpy(x):
    return ops.convert_to_numpy(x)


def run_backbone_test(cls, init_kwargs, input_data, expected_output_shape, tmp_path,
                      run_mixed_precision=True):  # fmt: skip
    """Builds a backbone, calls it, and round-trips its config, `.keras` file and preset.

    Args:
        cls: the backbone class.
        init_kwargs: dict of constructor arguments (a tiny configuration).
        input_data: a batch of model-ready inputs.
        expected_output_shape: full output shape for `input_data`.
        tmp_path: a temporary directory (pytest's `tmp_path`).
        run_mixed_precision: also build with `mixed_bfloat16`.

    Returns:
        The backbone.

    Example:
    >>> run_backbone_test(SpikformerBackbone, TINY, images, (2, 2, 4, 32), tmp_path)
    """
    backbone = cls(**init_kwargs)
    output = backbone(input_data, training=False)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert np.all(np.isfinite(_numpy(output)))
    symbolic = backbone(keras.Input(batch_shape=(None,) + tuple(input_data.shape[1:])))
    assert tuple(symbolic.shape[1:]) == tuple(expected_output_shape[1:])

    config = backbone.get_config()
    clone = cls.from_config(config)
    assert type(clone) is cls and clone.get_config() == config
    assert len(clone.weights) == len(backbone.weights)

    run_model_saving_test(backbone, input_data, tmp_path)
    backbone.save_to_preset(tmp_path / "backbone_preset")
    restored = cls.from_preset(str(tmp_path / "backbone_preset"))
    np.testing.assert_array_equal(
        _numpy(restored(input_data, training=False)), _numpy(output)
    )

    if run_mixed_precision:
        mixed = cls(**{**init_kwargs, "dtype": "mixed_bfloat16"})
        out = mixed(input_data, training=False)
        assert np.all(np.isfinite(_numpy(ops.cast(out, "float32"))))
        assert all(w.dtype == "float32" for w in mixed.weights)
    return backbone


def run_task_test(cls, init_kwargs, train_data, tmp_path, batch_size=2,
                  raw_images=None):  # fmt: skip
    """Predicts, fits (XLA where the backend has it), and round-trips a classifier.

    Args:
        cls: the classifier class (e.g. `Spikformer`).
        init_kwargs: constructor arguments (`backbone`, `num_classes`, ...).
        train_data: `(x, y)`: model-ready inputs (or raw images when the
            classifier has a preprocessor) and integer labels.
        tmp_path: a temporary directory.
        batch_size: int.
        raw_images: optional list of raw uint8 images of mixed sizes: the
            classifier's `predict` must equal preprocessing each by hand.

    Returns:
        The trained classifier.

    Example:
    >>> run_task_test(Spikformer, {"backbone": backbone, "num_classes": 3},
    ...     (images, labels), tmp_path)
    """
    model = cls(**init_kwargs)
    x, y = train_data
    num_classes = init_kwargs.get("num_classes", getattr(model, "num_classes", None))
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    assert logits.shape == (len(y), num_classes) and logits.dtype == np.float32

    model.compile(jit_compile=keras.backend.backend() != "torch")
    before = [_numpy(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [
        not np.array_equal(a, _numpy(b))
        for a, b in zip(before, model.trainable_weights, strict=True)
    ]
    assert sum(changed) > len(changed) // 2, "fit left most weights unchanged"

    expected = model.predict(x, batch_size=batch_size, verbose=0)
    path = tmp_path / "task.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is cls
    np.testing.assert_array_equal(restored.predict(x, batch_size=batch_size, verbose=0), expected)

    model.save_to_preset(tmp_path / "task_preset")
    from_preset = cls.from_preset(str(tmp_path / "task_preset"))
    np.testing.assert_array_equal(
        from_preset.predict(x, batch_size=batch_size, verbose=0), expected
    )

    if raw_images is not None and model.preprocessor is not None:
        together = model.predict(raw_images, verbose=0)
        one_by_one = np.concatenate(
            [
                _numpy(model(model.preprocessor(image[None]), training=False))
                for image in raw_images
            ]
        )
        np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-6)
    return model


def run_preset_test(cls, preset, input_data, expected_output_shape, load_weights=False,
                    **overrides):  # fmt: skip
    """`cls.from_preset(preset)` builds, is listed in `cls.presets`, and runs.

    Example:
    >>> run_preset_test(Spikformer, "spikformer_tiny_cifar", images, (2, 10))
    """
    assert preset in cls.presets, f"{preset} not in {cls.__name__}.presets"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls.from_preset(preset, load_weights=load_weights, **overrides)
    output = model(input_data, training=False)
    assert tuple(output.shape) == tuple(expected_output_shape)
    assert np.all(np.isfinite(_numpy(output)))
    return model
