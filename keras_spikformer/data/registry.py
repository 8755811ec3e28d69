"""One entry point for every dataset the CLI and the tutorials train on."""

from keras_spikformer.data.image_datasets import (
    ImageData,
    digits,
    image_folder,
    tfds_images,
)

EVENT_DATASETS = ("cifar10dvs", "dvsgesture", "events")
IMAGE_DATASETS = ("digits", "folder", "cifar10", "cifar100", "imagenet2012")


def load_dataset(
    name,
    data_dir=None,
    image_shape=(32, 32, 3),
    num_timesteps=4,
    cache_dir=None,
    split_seed=None,
):
    """Unbatched train/test pipelines shaped for a model.

    Data that are present are read offline; missing public datasets are
    fetched once (never while `KERAS_SPIKFORMER_OFFLINE=1`).

    Args:
        name: `"digits"` (embedded), `"folder"` (class-per-subfolder images in
            `data_dir`), a TFDS image dataset (`"cifar10"`, `"cifar100"`,
            `"mnist"`, ..., downloaded and prepared by TFDS when missing;
            `"imagenet2012"` from its manual tar files), or event data
            (`"cifar10dvs"`, `"dvsgesture"`: the published archives,
            downloaded when missing; `"events"` = a folder of `.npz` event
            files) integrated into `num_timesteps` frames.
        data_dir: where the data lie; None: TFDS's data directory for TFDS
            datasets, `$KERAS_SPIKFORMER_CACHE/datasets/<name>` for
            `cifar10dvs`/`dvsgesture` (not needed for `"digits"`).
        image_shape: the model's `(height, width, channels)`.
        num_timesteps: frames per example for event data.
        cache_dir: where event frames are cached (built once).
        split_seed: CIFAR10-DVS only: None for the shipped seeded split
            (`cifar10dvs_split`), an int for another seeded split.

    Returns:
        `ImageData` whose examples are `(image [H, W, C] float32 0..255, label)`
        or `(frames [T, H, W, 2] float32 counts, label)`.

    Example:
    >>> data = load_dataset("digits", image_shape=(16, 16, 1))
    """
    import tensorflow as tf

    height, width, channels = (int(d) for d in image_shape)
    if split_seed is not None and name != "cifar10dvs":
        raise ValueError(
            f"--split-seed only applies to cifar10dvs, which has no official split; "
            f"{name!r} has its own split. Leave --split-seed out."
        )
    if name in EVENT_DATASETS:
        return _event_data(name, data_dir, height, num_timesteps, cache_dir, split_seed)
    if data_dir is None and name == "folder":
        raise ValueError(
            "--dataset folder needs --data-dir: the folder holding train/<class>/ "
            "and test/<class>/ images."
        )
    if name == "digits":
        if height != width:
            raise ValueError(f"digits are square; the model wants {height}x{width}.")
        data = digits(image_size=height)
    elif name == "folder":
        data = image_folder(data_dir, (height, width), channels=channels)
    else:
        data = tfds_images(name, data_dir, (height, width))
    source_channels = data.train.element_spec[0].shape[-1]
    if source_channels != channels:
        if source_channels == 1 and channels == 3:
            to_rgb = lambda x, y: (tf.image.grayscale_to_rgb(x), y)  # noqa: E731
            data.train, data.test = data.train.map(to_rgb), data.test.map(to_rgb)
        else:
            raise ValueError(
                f"{name} has {source_channels}-channel images but the model takes "
                f"{channels}; rebuild it with image_shape=(H, W, {source_channels})."
            )
    return data


def _event_data(name, data_dir, image_size, num_frames, cache_dir, split_seed):
    from keras_spikformer.data.cifar10dvs_split import file_order
    from keras_spikformer.data.dvs_downloads import dvs_dataset
    from keras_spikformer.data.event_datasets import event_frames_dataset
    from keras_spikformer.data.events import DVSGESTURE_CLASS_NAMES

    if name == "events":
        if data_dir is None:
            raise ValueError(
                "--dataset events needs --data-dir: a folder of .npz event files."
            )
        kind = "npz_folder"
    else:
        kind, data_dir = dvs_dataset(name, data_dir)
    order = file_order(split_seed) if name == "cifar10dvs" else None
    splits = {
        split: event_frames_dataset(
            data_dir, kind, num_frames=num_frames, split=split, cache_dir=cache_dir,
            image_size=image_size, shuffle=False, file_order=order,
        )
        for split in ("train", "test")
    }  # fmt: skip
    train, test = splits["train"], splits["test"]
    names = list(train.class_names)
    if name == "dvsgesture" and kind == "npz_folder":  # tonic's copy: 00..10
        names = list(DVSGESTURE_CLASS_NAMES)
    return ImageData(
        train=train.dataset,
        test=test.dataset,
        num_classes=len(names),
        class_names=names,
        num_train=train.num_examples,
        num_test=test.num_examples,
    )
