"""Encoded-image sources read lazily: image folders and prepared TFDS builders.

A source lists where its examples are (file names, or TFRecord shards) and
yields `elements(order_seed)`: file indices or serialized records, in an order
that depends only on `order_seed` (`None`: stored order). `load(element)`
turns one into `(encoded bytes, int32 label)`. Nothing is decoded here; the
only per-dataset memory is the list of file names (folders) or shard names
(TFDS) plus one shuffle window of encoded records, bounded in bytes (TFDS).
"""

import os

import tensorflow as tf

# What `tf.io.decode_image` reads; other files are skipped (and counted).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def window_shuffle(dataset, size, order_seed):
    """Shuffles `dataset` within consecutive windows of `size` encoded records.

    Stateless (the order depends only on `order_seed`, a tensor), unlike
    `Dataset.shuffle`, whose seed must be a Python int once a global seed
    is set; memory is one window of encoded records.
    """
    order_seed = tf.cast(order_seed, tf.int64)
    base = order_seed[0] * 1_000_003 + order_seed[1]

    def permute(index, window):
        count = tf.shape(tf.nest.flatten(window)[0])[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), tf.stack([base, index])
        )
        return tf.nest.map_structure(lambda t: tf.gather(t, order), window)

    windows = dataset.batch(int(size)).enumerate().map(permute)
    return windows.unbatch()


class SkipCounter:
    """Counts examples dropped by the pipeline (unreadable or undecodable files).

    The pipeline numbers the elements of an epoch `0, 1, ...` before decoding
    and calls `update(position)` on each survivor, in order; the gaps are the
    skipped ones (the first pass over the data only, see `image_pipeline`).
    """

    def __init__(self, num_examples):
        self.num_examples = int(num_examples)
        self.skipped = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._next = tf.Variable(0, dtype=tf.int64, trainable=False)

    def update(self, position):
        position = tf.cast(position, tf.int64)
        start = tf.where(position < self._next, tf.constant(0, tf.int64), self._next)
        n = tf.constant(self.num_examples, tf.int64)
        gap = tf.maximum(tf.minimum(position, n) - tf.minimum(start, n), 0)
        with tf.control_dependencies([self.skipped.assign_add(gap)]):
            return tf.identity(self._next.assign(position + 1))

    def value(self):
        """Examples skipped so far (each pass over a bad file counts once)."""
        return int(self.skipped.numpy())


class FolderSource:
    """Images in `<split>/<class>/**/<file>` (torchvision's ImageFolder layout).

    Args:
        paths: list of file paths (str; non-UTF-8 names as surrogate escapes).
        labels: list of int labels.
        ignored: dict suffix -> count of files skipped as non-images.
        empty_classes: class names whose folders hold no image.
        not_regular: dict reason -> count of entries skipped unread (devices,
            FIFOs, folder links looping or leaving the class folder).
    """

    def __init__(self, paths, labels, ignored=None, empty_classes=(), not_regular=None):
        self.paths = list(paths)
        self.labels = list(labels)
        self.num_examples = len(self.paths)
        self.ignored = dict(ignored or {})
        self.empty_classes = list(empty_classes)
        self.not_regular = dict(not_regular or {})
        self.counter = SkipCounter(self.num_examples)
        # File-system bytes: names that are not UTF-8 reach tf.io.read_file whole.
        self._paths = tf.constant([os.fsencode(p) for p in self.paths] or [b""])
        self._labels = tf.constant(self.labels or [0], tf.int32)

    def elements(self, order_seed=None):
        indices = tf.range(self.num_examples, dtype=tf.int32)
        if order_seed is not None:
            indices = tf.random.experimental.stateless_shuffle(
                indices, tf.cast(order_seed, tf.int64)
            )
        return tf.data.Dataset.from_tensor_slices(indices)

    def load(self, index):
        return tf.io.read_file(self._paths[index]), self._labels[index]


class TfdsSource:
    """A prepared TFDS split read as encoded records from its TFRecord shards.

    Args:
        builder: a prepared `tfds` builder with `image` and `label` features.
        split: split name.
        shuffle_buffer_mb: bound on the shuffle buffer of encoded records.
    """

    def __init__(self, builder, split, shuffle_buffer_mb=256):
        import tensorflow_datasets as tfds

        info = builder.info
        file_format = str(getattr(info, "file_format", "tfrecord") or "tfrecord")
        if "tfrecord" not in file_format.lower():
            raise ValueError(
                f"{info.name} is stored as {file_format}; the streaming pipeline "
                "reads TFRecord shards. Prepare it with `tfds build --file_format "
                "tfrecord`."
            )
        missing = {"image", "label"} - set(info.features.keys())
        if missing:
            raise ValueError(
                f"{info.name} has features {list(info.features.keys())}; image "
                f"classification needs 'image' and 'label' (missing {sorted(missing)})."
            )
        self.features = info.features
        self.decoders = {"image": tfds.decode.SkipDecoding()}
        self.filepaths = [str(p) for p in info.splits[split].filepaths]
        self.num_examples = int(info.splits[split].num_examples)
        num_bytes = int(getattr(info.splits[split], "num_bytes", 0) or 0)
        per_example = max(1, num_bytes // max(1, self.num_examples))
        self.shuffle_buffer = int(
            max(1, min(self.num_examples, shuffle_buffer_mb * 2**20 // per_example))
        )
        self.ignored, self.empty_classes = {}, []
        self.counter = SkipCounter(self.num_examples)

    def elements(self, order_seed=None):
        files = tf.constant(self.filepaths, tf.string)
        if order_seed is None:
            return tf.data.TFRecordDataset(files)
        order_seed = tf.cast(order_seed, tf.int64)
        files = tf.random.experimental.stateless_shuffle(files, order_seed)
        records = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(16, len(self.filepaths)),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return window_shuffle(records, self.shuffle_buffer, order_seed)

    def load(self, record):
        example = self.features.deserialize_example(record, decoders=self.decoders)
        return example["image"], tf.cast(example["label"], tf.int32)


class AsDatasetSource:
    """A TFDS split through `builder.as_dataset` (no shard files: e.g. `mock_data`).

    The stored order is shuffled with a buffer of encoded records per epoch.

    Args:
        builder: a `tfds` builder whose `as_dataset` works.
        split: split name.
        shuffle_buffer: int, records in the shuffle buffer.
    """

    def __init__(self, builder, split, shuffle_buffer=10_000):
        import tensorflow_datasets as tfds

        dataset = builder.as_dataset(
            split=split, decoders={"image": tfds.decode.SkipDecoding()}
        )
        self._dataset = dataset.map(
            lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32))
        )
        known = int(self._dataset.cardinality())
        self.num_examples = known if known >= 0 else sum(1 for _ in self._dataset)
        self.shuffle_buffer = max(1, min(self.num_examples, int(shuffle_buffer)))
        # Encoded records of one shuffle window (`window_shuffle`).
        self.ignored, self.empty_classes = {}, []
        self.counter = SkipCounter(self.num_examples)

    def elements(self, order_seed=None):
        if order_seed is None:
            return self._dataset
        return window_shuffle(self._dataset, self.shuffle_buffer, order_seed)

    def load(self, element):
        return element
