"""Temporal efficient training (TET) loss, the CIFAR10-DVS recipe of the Spike-driven Transformer."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spikformer")
class TETLoss(keras.losses.Loss):
    """TET loss on per-time-step logits `[batch, time, classes]`.

    ```
    loss = (1 - lamb) * mean_t CE(logits[:, t], labels) + lamb * MSE(logits, means)
    ```

    as in the reference's `criterion.py` (Deng et al., ICLR 2022): the
    cross-entropy (with label smoothing) of every time step's logits,
    averaged over time, plus a small pull of all logits towards `means`.
    The model must return per-step logits: build the classifier with
    `per_step_logits=True` (`SpikeDrivenTransformer`), and measure accuracy
    on their mean over time.

    Args:
        lamb: float in [0, 1], weight of the MSE term. Defaults to `0.001`.
        means: float, the MSE target. Defaults to `1.0`.
        label_smoothing: float. Defaults to `0.0`.
        **kwargs: `name`, `reduction`.

    Input: `y_true` one-hot `[batch, classes]` (or soft labels), `y_pred`
    logits `[batch, time, classes]`.

    Example:
    >>> loss = TETLoss(lamb=0.001, label_smoothing=0.1)
    >>> value = loss(keras.ops.one_hot([1, 2], 10), keras.random.normal((2, 4, 10)))

    References:
        Deng et al., "Temporal Efficient Training of Spiking Neural Network
        via Gradient Re-weighting", ICLR 2022 (arXiv 2202.11946).
    """

    def __init__(
        self, lamb=0.001, means=1.0, label_smoothing=0.0, name="tet_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(lamb) <= 1.0:
            raise ValueError(f"`lamb` must be in [0, 1]; got {lamb}.")
        self.lamb = float(lamb)
        self.means = float(means)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if len(y_pred.shape) != 3:
            raise ValueError(
                f"TETLoss needs per-time-step logits [batch, time, classes]; got shape "
                f"{tuple(y_pred.shape)}. Build the classifier with per_step_logits=True."
            )
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        targets = ops.repeat(ops.expand_dims(y_true, 1), y_pred.shape[1], axis=1)
        cross_entropy = keras.losses.categorical_crossentropy(
            targets, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )
        per_sample = ops.mean(cross_entropy, axis=1)
        if self.lamb:
            mse = ops.mean(ops.square(y_pred - self.means), axis=(1, 2))
            per_sample = (1.0 - self.lamb) * per_sample + self.lamb * mse
        return per_sample

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "lamb": self.lamb,
                "means": self.means,
                "label_smoothing": self.label_smoothing,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class TimeAveragedAccuracy(keras.metrics.MeanMetricWrapper):
    """Top-1 accuracy of the time-averaged logits (what TET-trained models predict).

    Takes one-hot `y_true` and logits `[batch, time, classes]` (or `[batch,
    classes]`, used as they are).

    Example:
    >>> model.compile(loss=TETLoss(), metrics=[TimeAveragedAccuracy()])
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(fn=_time_averaged_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _time_averaged_accuracy(y_true, y_pred):
    if len(y_pred.shape) == 3:
        y_pred = ops.mean(y_pred, axis=1)
    return keras.metrics.categorical_accuracy(y_true, y_pred)
