"""Keras callbacks for the training recipe."""

import keras


class MixupOffCallback(keras.callbacks.Callback):
    """Switches MixUp/CutMix off from epoch `off_epoch` on (timm's `mixup_off_epoch`).

    The reference turns mixing off when the 0-based epoch index reaches
    `mixup_off_epoch`; this callback does the same at `on_epoch_begin`, and
    turns it back on for earlier epochs (so resuming with `initial_epoch`
    works). It flips the `mixup_enabled` TensorFlow variable that the
    augmentation reads at every batch, which works inside `tf.data` whatever
    the Keras backend. Batches already prefetched when the epoch starts keep
    their mixing (at most the prefetch buffer).

    Args:
        augment: a `TrainAugment` / `EventTrainAugment` (anything with a
            `mixup_enabled` variable and `mixup_off_epoch`).
        off_epoch: int or `None`. Defaults to `augment.mixup_off_epoch` (the
            recipe's); `None`/0 there means mixing never switches off.

    Example:
    ```python
    augment = make_train_augment(recipe, 32, 10)
    model.fit(train.map(augment), callbacks=[MixupOffCallback(augment)])
    ```
    """

    def __init__(self, augment, off_epoch=None):
        super().__init__()
        if not hasattr(augment, "mixup_enabled"):
            raise TypeError(
                f"{type(augment).__name__} has no `mixup_enabled` variable; pass "
                "the object returned by make_train_augment or "
                "make_event_train_augment."
            )
        self.augment = augment
        if off_epoch is None:
            off_epoch = getattr(augment, "mixup_off_epoch", None)
        self.off_epoch = int(off_epoch) if off_epoch else None
        self._initially_enabled = bool(augment.mixup_enabled.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        if self.off_epoch is None or not self._initially_enabled:
            return
        self.augment.mixup_enabled.assign(epoch < self.off_epoch)
