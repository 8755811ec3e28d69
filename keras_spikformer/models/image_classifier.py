"""`ImageClassifier`: the base class of every family's classifier (the task)."""

import contextlib

import keras
import numpy as np

from keras_spikformer import preset_builder
from keras_spikformer.models.backbone import InputCheckMixin, PresetCatalogue
from keras_spikformer.models.image_inputs import (
    check_dataset_images,
    check_model_inputs,
)


class ImageClassifier(InputCheckMixin, keras.Model):
    """Base class of the families' image classifiers, KerasHub's `Task` split.

    A classifier is a functional model `backbone -> head` with an optional
    `preprocessor` that `fit`, `evaluate` and `predict` apply to raw images
    first, so `model.predict(uint8_images)` of any size gives the logits of
    the correctly resized and normalised images. A subclass sets
    `backbone_cls` and `preprocessor_cls`, stores `self.backbone`,
    `self.preprocessor` and its head layers, builds the graph, calls
    `super().__init__(inputs=..., outputs=..., **kwargs)` and adds its own
    arguments to `get_config`.

    Example:
    >>> model = keras_spikformer.Spikformer.from_preset("spikformer_tiny_digits")
    >>> logits = model.predict(raw_uint8_images)
    >>> model.save_to_preset("./my_model")
    """

    backbone_cls = None
    preprocessor_cls = None
    presets = PresetCatalogue()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._initialized = True
        # `fit`/`evaluate`/`predict` run the preprocessor first while True.
        self.apply_preprocessor = True
        # Functional models ignore `dtype`.
        self.dtype_policy = self.backbone.dtype_policy
        if self.preprocessor is not None:
            _check_preprocessor(self.preprocessor, self.backbone)

    def __setattr__(self, name, value):
        # Subclasses store their layers before `super().__init__` (KerasHub's
        # pattern), which torch's `Module.__setattr__` refuses; as in KerasHub,
        # those go straight to `__dict__` (the functional graph tracks them).
        uninitialized = not hasattr(self, "_initialized")
        is_property = isinstance(getattr(type(self), name, None), property)
        if keras.backend.backend() == "torch" and (uninitialized or is_property):
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    @property
    def image_shape(self):
        """The backbone's input shape without the batch (and time) axis."""
        return tuple(self.backbone.image_shape)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)
            if self.preprocessor is not None
            else None,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    # === Presets ===

    @classmethod
    def from_preset(cls, preset, load_weights=None, **overrides):
        """Builds the classifier of a preset (backbone, head, preprocessor).

        Args:
            preset: a zoo name (see `cls.presets`), a preset directory, or an
                `hf://owner/name` handle.
            load_weights: `None` loads weights when the preset has them (and
                warns when it has none); `True` requires them; `False` skips them.
            **overrides: backbone or classifier arguments to change, e.g.
                `num_classes=100`, `num_timesteps=2`, `image_shape=(64, 64, 3)`,
                `dtype="mixed_bfloat16"`. Weights whose variable path and
                shape still match are loaded; the others are freshly
                initialised and named in one warning.

        Returns:
            A classifier of this class.

        Example:
        >>> model = Spikformer.from_preset("spikformer_4_384_cifar10", num_classes=100)
        """
        return preset_builder.load_task(cls, preset, load_weights, overrides)

    def save_to_preset(self, directory, overwrite=False):
        """Writes the preset files (config, task, preprocessor, weights, metadata, recipe).

        The directory is written atomically; `from_preset(directory)` reads it back.

        Example:
        >>> model.save_to_preset("./my_model")
        """
        preset_builder.save_preset(self, directory, overwrite=overwrite)

    # === Training defaults and preprocessing ===

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`keras.Model.compile` with defaults for fine-tuning.

        `"auto"` gives AdamW (learning rate 1e-4, weight decay 0.01), sparse
        categorical cross-entropy on logits and top-1 accuracy. Pass any
        Keras optimizer, loss or metrics instead.

        Example:
        >>> model.compile()
        >>> model.fit(images, labels, epochs=3)
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    @contextlib.contextmanager
    def preprocessing_disabled(self):
        """Within the block, `fit`/`evaluate`/`predict` take model-ready inputs.

        For pipelines that preprocess (and augment) themselves; the same as
        setting `model.apply_preprocessor = False` for the block.

        Example:
        >>> with model.preprocessing_disabled():
        ...     model.fit(normalised_dataset)
        """
        saved, self.apply_preprocessor = self.apply_preprocessor, False
        try:
            yield self
        finally:
            self.apply_preprocessor = saved

    def preprocess(self, x):
        """Applies the preprocessor to images: an array, a list of images of any
        sizes, or a `tf.data.Dataset` of `(images, ...)` batches.

        Arrays are checked first (`image_inputs.check_raw_images`): a clear
        error for strings, bool, empty batches, empty images, wrong layouts
        and NaN or infinite pixels; a warning for 0..1 float images.

        Returns:
            Model-ready inputs of the same kind (a list becomes one array).
        """
        pre = self.preprocessor
        if pre is None or not self.apply_preprocessor or x is None:
            return x
        channels = self.image_shape[-1]
        if type(x).__module__.startswith("tensorflow") and hasattr(x, "map"):
            check_dataset_images(x)

            def fn(*batch):
                if isinstance(batch[0], dict):  # named inputs: left to the user
                    return batch if len(batch) > 1 else batch[0]
                return (pre(batch[0]),) + tuple(batch[1:])

            return x.map(fn)
        if isinstance(x, (list, tuple)):
            if not x:
                raise ValueError(
                    "Got an empty list of images; pass at least one image."
                )
            arrays = [np.asarray(image) for image in x]
            for image in arrays:
                pre.check_images(image, channels)
            if len({a.shape for a in arrays}) == 1 and arrays[0].ndim == 4:
                return self._preprocess_array(np.concatenate(arrays))
            return np.concatenate(
                [self._preprocess_array(a[None] if a.ndim == 3 else a) for a in arrays]
            )
        if hasattr(x, "shape") and not isinstance(x, dict):
            pre.check_images(x, channels)
            return self._preprocess_array(x if len(x.shape) > 3 else x[None])
        return x

    def _preprocess_array(self, x, budget=256 * 2**20):
        # Chunks of at most 64 images whose resized float32 copies fit `budget`.
        pre = self.preprocessor
        size = getattr(pre, "image_size", x.shape[1:-1])
        pixels = max(
            np.prod(x.shape[1:-1]), np.prod(size) / getattr(pre, "crop_pct", 1.0) ** 2
        )
        chunk = int(max(1, min(64, budget // (4 * pixels * x.shape[-1]))))
        out = [
            keras.ops.convert_to_numpy(self.preprocessor(x[i : i + chunk]))
            for i in range(0, int(x.shape[0]), chunk)
        ]
        return np.concatenate(out).astype("float32")

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        if validation_data is not None and self.apply_preprocessor:
            if isinstance(validation_data, tuple) and self.preprocessor is not None:
                validation_data = (self.preprocess(validation_data[0]),) + tuple(
                    validation_data[1:]
                )
            else:
                validation_data = self.preprocess(validation_data)
        x = self.preprocess(x)
        check_model_inputs(self, x)
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x = self.preprocess(x)
        check_model_inputs(self, x)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, fused=False, early_exit=None, **kwargs):
        """`keras.Model.predict` after the preprocessor; `fused=True` runs the
        batch-norm-folded copy (see `fuse`), refreshed from the current weights.

        With `early_exit` (e.g. `0.9` or `"margin:0.3"`, see
        `keras_spikformer.streaming.EarlyExit`) each sample runs step by step
        until the rule holds: returns `(logits, steps)` instead
        (`streaming.anytime_predict`; takes `batch_size`, `verbose`, `num_steps`).

        Folding changes float rounding, so a spike near threshold can flip
        (on the trained digits preset ~2 spikes per million; exact on the
        reference fixtures): the default stays the unfused model.

        Inputs are checked eagerly on every call, before the compiled function
        runs (see `image_inputs`).
        """
        if early_exit is not None:
            from keras_spikformer.streaming.early_exit import predict_with_early_exit

            return predict_with_early_exit(self, x, early_exit, args, fused, kwargs)
        x = self.preprocess(x)
        check_model_inputs(self, x)
        if not fused:
            return super().predict(x, *args, **kwargs)
        from keras_spikformer.inference import fuse, refresh

        if getattr(self, "_fused_copy", None) is None:
            object.__setattr__(self, "_fused_copy", fuse(self))
        else:
            refresh(self._fused_copy, self)
        return keras.Model.predict(self._fused_copy, x, *args, **kwargs)

    # === Streaming (keras_spikformer.streaming) ===

    def time_features(self, backbone_outputs):
        """What the classifier averages over time, per step: `[batch, T, ...]`
        (a tensor, or a tuple of them). Each family defines it."""
        raise NotImplementedError(f"{type(self).__name__} defines no time_features.")

    def logits_from_time_mean(self, means):
        """The inference logits from the time mean of `time_features`."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no logits_from_time_mean."
        )

    def stream_refusal(self):
        """Why this model cannot run step by step (a sentence), or `None`."""
        return None

    def stream(self, batch_size, jit_compile="auto"):
        """A stateful stream: one time step per call, membranes carried over.

        See `keras_spikformer.streaming.Stream`; the stream copies the current
        weights (call `stream()` again after training).

        Example:
        >>> stream = model.stream(batch_size=1)
        >>> for frame in frames:  # [1, H, W, 2] event frames, or images
        ...     out = stream.step(frame)  # {"logits", "mean_logits", "steps"}
        >>> stream.reset_state()
        """
        from keras_spikformer.streaming import Stream

        return Stream(self, batch_size, jit_compile=jit_compile)

    def export_step(
        self, filepath, format="tf_saved_model", batch_size=1, overwrite=False
    ):
        """Exports the streaming step `(x_t, state) -> (outputs_t, state)` with
        the current weights, state as named tensors (TF SavedModel or ONNX);
        see `keras_spikformer.streaming.export_step`.

        Example:
        >>> model.export_step("step.onnx", format="onnx", batch_size=1)
        """
        from keras_spikformer.streaming.step_export import export_step

        return export_step(
            self, filepath, format=format, batch_size=batch_size, overwrite=overwrite
        )

    def export(
        self, filepath, format="tf_saved_model", fused=False, overwrite=False, **kwargs
    ):
        """`keras.Model.export` (TF SavedModel, ONNX, ...) of the model-ready
        inference function, optionally batch-norm-folded; see
        `keras_spikformer.inference.export_model`. An existing `.onnx` file or
        SavedModel is replaced only with `overwrite=True`.

        Example:
        >>> model.export("digits.onnx", format="onnx")
        """
        from keras_spikformer.inference.export import export_model

        return export_model(
            self, filepath, format=format, fused=fused, overwrite=overwrite, **kwargs
        )

    def fuse(self):
        """An inference-only copy with every batch norm that directly follows a
        dense/conv layer folded into it (`keras_spikformer.inference.fuse`).

        Example:
        >>> fused = model.fuse()
        >>> logits = fused.predict(images)
        """
        from keras_spikformer.inference import fuse

        return fuse(self)


def _check_preprocessor(preprocessor, backbone):
    """The preprocessor must produce what the backbone takes."""
    size = tuple(preprocessor.image_size)
    shape = tuple(backbone.image_shape)
    encoding = getattr(backbone, "encoding", "direct")
    if preprocessor.encoding != encoding:
        raise ValueError(
            f"The preprocessor handles encoding {preprocessor.encoding!r} but the "
            f"backbone takes {encoding!r}; build the preprocessor with "
            f"encoding={encoding!r}."
        )
    if encoding == "direct" and size != shape[:2]:
        raise ValueError(
            f"The preprocessor makes {size[0]}x{size[1]} images but the backbone "
            f"takes {shape[0]}x{shape[1]}; build it with image_size={shape[:2]} "
            "(from_preset does this when you override image_shape)."
        )
    channels = preprocessor.num_channels
    if channels is not None and channels != shape[-1]:
        raise ValueError(
            f"The preprocessor normalises {channels} channels but the backbone takes "
            f"{shape[-1]}; give mean/std with {shape[-1]} values."
        )
