"""The streaming image pipeline: encoded records in, static-shape batches out.

Per epoch `e`: the source's elements in an order fixed by `(seed, e)` (files
shuffled; TFDS shards shuffled, interleaved and shuffled in windows of
encoded records bounded in bytes) -> numbered -> read and decoded late in a parallel map with the
per-example work in `uint8` (crop while decoding, resize, flip, RandAugment;
stateless draws from `(seed, e, position)`) -> unreadable or corrupt files
dropped and counted -> `batch(drop_remainder=True)` (uint8) -> `take(steps)`.
Epochs are chained with `flat_map`; the batch stage (normalise, erasing,
MixUp/CutMix) then runs on batches of static shape, and batches are
prefetched.

An epoch that lost files to decoding errors is topped up from a second pass
over the same order, so every epoch has exactly `steps` batches and a bad
file never stops `fit` mid-epoch. Memory does not grow with the dataset: the
only per-example state is the list of file names (or shard names).

A resumed run (`start_epoch > 0`) sees the same examples, crops, flips and
RandAugment ops as an uninterrupted one; the batch stage's random draws
(erasing, MixUp/CutMix) come from stateful generators, so they are not
replayed.

Example:
```python
data = image_folder("~/imagenet", (224, 224))
augment = make_train_augment(recipe, 224, 1000, seed=0)
train = train_batches(data.records.train, augment, 256, seed=0, epochs=310)
model.fit(train, epochs=310, steps_per_epoch=data.num_train // 256)
```
"""

import dataclasses

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class StreamingRecords:
    """The encoded train and test sources of a streaming `ImageData`."""

    train: object
    test: object

    def report(self):
        """What was skipped: unreadable files, non-image files, empty classes, and
        entries not read (devices, FIFOs, folder links looping or leaving a class)."""
        out = {}
        for name, source in (("train", self.train), ("test", self.test)):
            out[f"{name}_undecodable_files"] = source.counter.value()
            out[f"{name}_non_image_files"] = sum(source.ignored.values())
            out[f"{name}_empty_class_folders"] = len(source.empty_classes)
            not_regular = sum(getattr(source, "not_regular", {}).values())
            out[f"{name}_not_regular_files"] = not_regular
        return out


def _decoded(source, example_transform, order_seed, example_seed, passes):
    """`(image, label)` of one pass order, undecodable examples dropped and counted."""
    elements = source.elements(order_seed)
    if passes > 1:
        elements = elements.repeat(passes)

    def decode(position, element):
        contents, label = source.load(element)
        seed = tf.stack([tf.cast(example_seed, tf.int64), tf.cast(position, tf.int64)])
        image, label = example_transform(contents, label, seed)
        return position, image, label

    def count(position, image, label):
        with tf.control_dependencies([source.counter.update(position)]):
            return tf.identity(image), tf.identity(label)

    decoded = elements.enumerate().map(
        decode, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return decoded.ignore_errors().map(count)


def train_batches(
    source, preprocess, batch_size, seed=0, start_epoch=0, epochs=1, steps=None
):
    """Training batches of epochs `start_epoch .. epochs - 1`, `steps` per epoch.

    Args:
        source: a `FolderSource` or `TfdsSource` (`ImageData.records.train`).
        preprocess: a `TrainAugment` or `EvalPreprocess` (anything with
            `example_transform` and `batch_stage`).
        batch_size: int.
        seed: int, fixes order, crops and flips per epoch.
        start_epoch, epochs: int.
        steps: batches per epoch; defaults to `num_examples // batch_size`.

    Returns:
        A `tf.data.Dataset` of `(images [batch_size, H, W, C], one-hot labels)`.
    """
    steps = int(steps or source.num_examples // batch_size)
    if steps < 1:
        raise ValueError(
            f"{source.num_examples} examples make no batch of {batch_size}; lower "
            "the batch size."
        )
    seed = int(seed)

    def epoch(e):
        order_seed = tf.stack([tf.constant(seed, tf.int64), e])
        decoded = _decoded(
            source, preprocess.example_transform, order_seed, seed * 10007 + e, 2
        )
        return decoded.batch(batch_size, drop_remainder=True).take(steps)

    epochs_ds = tf.data.Dataset.range(int(start_epoch), int(epochs))
    batches = epochs_ds.flat_map(epoch)
    batches = batches.map(
        preprocess.batch_stage, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return batches.prefetch(AUTOTUNE)


def eval_batches(source, preprocess, batch_size, drop_remainder=False):
    """Evaluation batches in the stored order (timm's eval transform).

    Args:
        source: `ImageData.records.test` (or `.train`).
        preprocess: an `EvalPreprocess`.
        batch_size: int.
        drop_remainder: bool (sharded evaluation needs even batches).

    Returns:
        A `tf.data.Dataset` of `(normalised images, one-hot labels)` batches.
    """
    decoded = _decoded(source, preprocess.example_transform, None, 0, 1)
    batches = decoded.batch(batch_size, drop_remainder=drop_remainder)
    return batches.map(preprocess.batch_stage, num_parallel_calls=AUTOTUNE).prefetch(
        AUTOTUNE
    )


def decoded_examples(source, example_transform):
    """Unbatched `(float32 image 0..255, int32 label)` in stored order (a view)."""
    decoded = _decoded(source, example_transform, None, 0, 1)
    return decoded.map(lambda image, label: (tf.cast(image, tf.float32), label))
