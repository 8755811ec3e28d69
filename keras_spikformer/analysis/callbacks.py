"""A Keras callback that logs firing rates during training and evaluation."""

import keras

from keras_spikformer.analysis.firing_rates import as_batch, firing_rates


class FiringRateCallback(keras.callbacks.Callback):
    """Measures the firing rate of every neuron layer on a fixed batch.

    At the end of every `every_n_epochs`-th epoch of `fit` (and at the end of
    a stand-alone `evaluate`) it runs `firing_rates(model, images)` (one eager
    pass, `training=False`) and adds `{log_prefix + layer: rate}` plus
    `{log_prefix + "mean": mean of the layer rates}` to `logs`, so `History`,
    `CSVLogger` and later callbacks see them (place it before `CSVLogger` in
    the callback list). Keras hands callbacks a copy of the evaluation logs,
    so `evaluate()`'s return value does not include the rates; read them from
    `callback.last_logs` (or from a later callback's `on_test_end`). With `tensorboard_dir` the rates are also written as
    TensorBoard scalars with `tf.summary` (step = epoch; a stand-alone
    `evaluate` writes at step `0` under `eval_<prefix>`); the `tensorboard`
    package is needed only to view them.

    Args:
        images: array-like, the fixed batch to measure (a few dozen images).
        every_n_epochs: int >= 1, measure every n-th epoch. Defaults to `1`.
        log_prefix: str, prefix of the log keys. Defaults to `"rate/"`.
        tensorboard_dir: str or `None`, a TensorBoard log directory.
            Defaults to `None`.
        batch_size: int or `None`, slices `images` to bound memory.

    Example:
    >>> model.fit(ds, epochs=10, callbacks=[FiringRateCallback(x_val[:32]),
    ...     keras.callbacks.CSVLogger("log.csv")])
    >>> history.history["rate/block.0.attn.attn_lif"]
    """

    def __init__(
        self,
        images,
        every_n_epochs=1,
        log_prefix="rate/",
        tensorboard_dir=None,
        batch_size=None,
    ):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"`every_n_epochs` must be >= 1; got {every_n_epochs}.")
        self.images = as_batch(images)
        self.every_n_epochs = int(every_n_epochs)
        self.log_prefix = str(log_prefix)
        self.tensorboard_dir = None if tensorboard_dir is None else str(tensorboard_dir)
        self.batch_size = batch_size
        self.last_rates = None
        self.last_logs = None
        self._in_fit = False
        self._writer = None

    def measure(self):
        """Returns `{log key: rate}` for the current weights."""
        rates = firing_rates(self.model, self.images, batch_size=self.batch_size)
        logs = {f"{self.log_prefix}{name}": rate for name, rate in rates.items()}
        logs[f"{self.log_prefix}mean"] = sum(rates.values()) / len(rates)
        self.last_rates = rates
        self.last_logs = logs
        return logs

    def _write(self, values, step, prefix=""):
        if self.tensorboard_dir is None:
            return
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
        # `tf.summary.write` with the "scalars" plugin tag is what
        # `tf.summary.scalar` writes, without needing the tensorboard package.
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        with self._writer.as_default():
            for key, value in values.items():
                tf.summary.write(
                    prefix + key,
                    tf.constant(value, tf.float32),
                    step=step,
                    metadata=metadata,
                )
        self._writer.flush()

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        values = self.measure()
        if logs is not None:
            logs.update(values)
        self._write(values, step=epoch)

    def on_test_end(self, logs=None):
        if self._in_fit:  # validation inside fit: measured at epoch end instead
            return
        values = self.measure()
        if logs is not None:
            logs.update(values)
        self._write(values, step=0, prefix="eval_")
        if self._writer is not None:
            self._writer.close()
            self._writer = None
