"""Image datasets: digits (in memory), TFDS builders and image folders (streamed).

TFDS builders and folders are read lazily as encoded images
(`ImageData.records`, see `image_pipeline`): the trainer decodes them late,
with the recipe's crops. Their `train` / `test` attributes are decoded views
(timm's eval geometry at the model size) for code that wants unbatched
`(image, label)` pairs. A TFDS dataset missing from `data_dir` is downloaded
and prepared there by TFDS on first use (see `tfds_datasets`); ImageNet comes
from manual files in `data_dir/manual`.
"""

import dataclasses
from pathlib import Path

import numpy as np

# TFDS names and the split used for testing.
TFDS_TEST_SPLITS = {"cifar10": "test", "cifar100": "test", "imagenet2012": "validation"}


@dataclasses.dataclass
class ImageData:
    """Unbatched train/test pipelines of `(image float32 [H, W, C] in 0..255, label int32)`.

    `records` (a `StreamingRecords`, or `None` for in-memory data) holds the
    encoded sources that `image_pipeline.train_batches` streams.
    """

    train: object
    test: object
    num_classes: int
    class_names: list
    num_train: int
    num_test: int
    records: object = None

    def input_report(self):
        """Counts of skipped inputs (streamed data), `{}` for in-memory data."""
        return {} if self.records is None else self.records.report()


def digits(image_size=16, test_fraction=0.2, seed=0):
    """scikit-learn's 8x8 digits (shipped with it: nothing to download).

    Grey levels 0..16 are scaled to 0..255 and the images upsampled by pixel
    repetition to `image_size` (a multiple of 8). The split is stratified and
    fixed by `seed`, whatever the training seed.

    Args:
        image_size: int, a multiple of 8. Defaults to `16`.
        test_fraction: float. Defaults to `0.2`.
        seed: int, split seed. Defaults to `0`.

    Returns:
        `ImageData`.

    Example:
    >>> data = digits(16)
    >>> data.num_train, data.num_test  # (1437, 360)
    """
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if image_size % 8:
        raise ValueError(
            f"digits are 8x8: image_size must be a multiple of 8, got {image_size}."
        )
    raw = load_digits()
    scale = image_size // 8
    images = raw.images[..., None].astype("float32") * (255.0 / 16.0)
    images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    labels = raw.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return ImageData(
        train=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        num_train=len(y_train),
        num_test=len(y_test),
    )


def _streaming(train, test, image_size, channels, class_names):
    from keras_spikformer.data.image_decode import EvalExampleTransform
    from keras_spikformer.data.image_pipeline import StreamingRecords, decoded_examples

    view = EvalExampleTransform(tuple(image_size), channels)
    return ImageData(
        train=decoded_examples(train, view),
        test=decoded_examples(test, view),
        num_classes=len(class_names),
        class_names=list(class_names),
        num_train=train.num_examples,
        num_test=test.num_examples,
        records=StreamingRecords(train, test),
    )


def tfds_images(name, data_dir, image_size, channels=3, shuffle_buffer_mb=256):
    """A TensorFlow Datasets image dataset, streamed as encoded records.

    Args:
        name: TFDS name (`"cifar10"`, `"cifar100"`, `"imagenet2012"`, ...).
        data_dir: the TFDS data directory; None for TFDS's default. A dataset
            not prepared there is downloaded and prepared by TFDS first
            (`tfds_datasets.prepared_builder`; never while
            `KERAS_SPIKFORMER_OFFLINE=1`). `imagenet2012` is prepared, offline,
            from its two tar files in `data_dir/manual`.
        image_size: `(height, width)` of the model.
        channels: int, 1 or 3. Defaults to `3`.
        shuffle_buffer_mb: bound on the training shuffle buffer of encoded
            records. Defaults to `256`.

    Returns:
        `ImageData` with `records`.

    Example:
    >>> data = tfds_images("imagenet2012", "~/tfds", (224, 224))  # doctest: +SKIP
    """
    import tensorflow as tf

    from keras_spikformer.data.image_sources import AsDatasetSource, TfdsSource
    from keras_spikformer.data.tfds_datasets import prepared_builder

    builder, data_dir = prepared_builder(name, data_dir)
    not_prepared = FileNotFoundError(
        f"{name} in {data_dir} is incomplete (a split is missing). Delete "
        f"{data_dir}/{name} and run again to prepare it afresh."
    )
    splits = builder.info.splits.keys() if builder.is_prepared() else ()
    test_split = TFDS_TEST_SPLITS.get(
        name,
        "validation" if "test" not in splits and "validation" in splits else "test",
    )
    try:
        if builder.is_prepared():
            train = TfdsSource(builder, "train", shuffle_buffer_mb)
            test = TfdsSource(builder, test_split, shuffle_buffer_mb)
        else:  # no shard files, e.g. tfds.testing.mock_data
            train = AsDatasetSource(builder, "train")
            test = AsDatasetSource(builder, test_split)
    except (KeyError, AssertionError, FileNotFoundError, tf.errors.NotFoundError) as e:
        raise not_prepared from e
    labels = builder.info.features["label"]
    return _streaming(train, test, image_size, channels, list(labels.names))


def image_folder(data_dir, image_size, channels=3):
    """Images in class-per-subfolder layout: `DIR/train/<class>/*` and `DIR/test/<class>/*`.

    A `val/` folder is taken when there is no `test/`. Files are listed
    (names only) and streamed. Files that are not JPEG/PNG/GIF/BMP are
    skipped and counted; an empty class folder stays a class (labels follow
    the sorted folder names, as torchvision's `ImageFolder`); corrupt images
    are skipped while streaming and counted (`ImageData.input_report()`).
    Folders are untrusted: only regular files are read (devices, FIFOs and
    broken links are skipped and counted unread), sub-folders are followed
    once and only inside their class folder (see `image_folder_listing`),
    and images declaring more than `image_decode.MAX_IMAGE_PIXELS` pixels
    in their header are skipped undecoded and counted.

    Args:
        data_dir: the root folder.
        image_size: `(height, width)` of the model.
        channels: 1 or 3 (grey-scale, CMYK, RGBA files are converted).

    Returns:
        `ImageData` with `records`.

    Example:
    >>> data = image_folder("~/imagenet", (224, 224))  # doctest: +SKIP
    """
    from keras_spikformer.data.image_folder_listing import list_image_folder

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    root = Path(data_dir).expanduser()
    test_name = "test" if (root / "test").is_dir() else "val"
    for split in ("train", test_name):
        folder = root / split
        if not folder.is_dir() or not any(
            p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()
        ):
            raise FileNotFoundError(
                f"{folder} has no class subfolders. Lay images out as "
                f"{root}/train/<class>/<image> and {root}/test/<class>/<image>."
            )
    train, class_names = list_image_folder(root / "train")
    if not train.num_examples:
        raise FileNotFoundError(
            f"{root / 'train'} holds no JPEG/PNG/GIF/BMP image in its class folders."
        )
    test, _ = list_image_folder(root / test_name, class_names)
    return _streaming(train, test, image_size, channels, class_names)
