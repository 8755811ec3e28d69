"""Image datasets as unbatched `tf.data` pipelines: digits, TFDS builders, image folders.

Nothing is downloaded: TFDS datasets must already be prepared (or, for
ImageNet, placed as manual files) under `data_dir`.
"""

import dataclasses
from pathlib import Path

import numpy as np

# TFDS names and the split used for testing.
TFDS_TEST_SPLITS = {"cifar10": "test", "cifar100": "test", "imagenet2012": "validation"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


@dataclasses.dataclass
class ImageData:
    """Unbatched train/test pipelines of `(image float32 [H, W, C] in 0..255, label int32)`."""

    train: object
    test: object
    num_classes: int
    class_names: list
    num_train: int
    num_test: int


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


def tfds_images(name, data_dir, image_size):
    """A prepared TensorFlow Datasets image dataset, resized to `image_size`.

    Args:
        name: TFDS name (`"cifar10"`, `"cifar100"`, `"imagenet2012"`, ...).
        data_dir: the TFDS data directory holding the prepared dataset (for
            `imagenet2012`, the manual tar files may sit in `data_dir/manual`
            and are prepared on first use, offline).
        image_size: `(height, width)` of the model.

    Returns:
        `ImageData`.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if data_dir is None or not Path(data_dir).expanduser().is_dir():
        raise FileNotFoundError(
            f"--data-dir {data_dir!r} is not a directory. Prepare {name} once on a "
            f"machine with internet (`tfds build {name} --data_dir DIR`) and pass DIR; "
            "nothing is downloaded at run time."
        )
    data_dir = str(Path(data_dir).expanduser())
    builder = tfds.builder(name, data_dir=data_dir)
    if name == "imagenet2012" and not builder.is_prepared():
        manual = Path(data_dir) / "manual"
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
        )
    test_split = TFDS_TEST_SPLITS.get(name, "test")
    height, width = image_size

    def convert(example):
        image = tf.image.resize(
            tf.cast(example["image"], tf.float32), (height, width), "bicubic"
        )
        return tf.clip_by_value(image, 0.0, 255.0), tf.cast(example["label"], tf.int32)

    try:
        train, test = (
            builder.as_dataset(split=split) for split in ("train", test_split)
        )
    except (AssertionError, FileNotFoundError, tf.errors.NotFoundError) as error:
        raise FileNotFoundError(
            f"{name} is not prepared in {data_dir}. Run `tfds build {name} "
            f"--data_dir {data_dir}` where there is internet, then copy the folder; "
            "nothing is downloaded at run time."
        ) from error
    info = builder.info
    labels = info.features["label"]
    return ImageData(
        train=train.map(convert),
        test=test.map(convert),
        num_classes=labels.num_classes,
        class_names=list(labels.names),
        num_train=_num_examples(info, "train", train),
        num_test=_num_examples(info, test_split, test),
    )


def _num_examples(info, split, dataset):
    """From the dataset's metadata, else by counting (mock data has no metadata)."""
    try:
        return info.splits[split].num_examples
    except KeyError:
        known = int(dataset.cardinality())
        return known if known >= 0 else sum(1 for _ in dataset)


def image_folder(data_dir, image_size, channels=3):
    """Images in class-per-subfolder layout: `DIR/train/<class>/*.png` and `DIR/test/<class>/*`.

    A `val/` folder is taken when there is no `test/`.

    Returns:
        `ImageData`.
    """
    import keras
    import tensorflow as tf

    root = Path(data_dir).expanduser()
    test_name = "test" if (root / "test").is_dir() else "val"
    for split in ("train", test_name):
        folder = root / split
        classes = (
            sorted(p.name for p in folder.iterdir() if p.is_dir())
            if folder.is_dir()
            else []
        )
        if not classes:
            raise FileNotFoundError(
                f"{folder} has no class subfolders. Lay images out as "
                f"{root}/train/<class>/<image> and {root}/test/<class>/<image>."
            )
        for name in classes:
            if not any(
                f.suffix.lower() in _IMAGE_SUFFIXES for f in (folder / name).iterdir()
            ):
                raise FileNotFoundError(
                    f"Class folder {folder / name} holds no images."
                )

    def load(split, class_names=None):
        return keras.utils.image_dataset_from_directory(
            root / split,
            labels="inferred",
            label_mode="int",
            class_names=class_names,
            color_mode={1: "grayscale", 3: "rgb", 4: "rgba"}[channels],
            batch_size=None,
            image_size=tuple(image_size),
            shuffle=False,
            verbose=False,
        )

    train = load("train")
    class_names = list(train.class_names)
    test = load(test_name, class_names)

    def cast(image, label):
        return tf.cast(image, tf.float32), tf.cast(label, tf.int32)

    return ImageData(
        train=train.map(cast),
        test=test.map(cast),
        num_classes=len(class_names),
        class_names=class_names,
        num_train=int(train.cardinality()),
        num_test=int(test.cardinality()),
    )
