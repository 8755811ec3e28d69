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
    name, data_dir=None, image_shape=(32, 32, 3), num_timesteps=4, cache_dir=None
):
    """Unbatched train/test pipelines shaped for a model.

    Args:
        name: `"digits"` (embedded), `"folder"` (class-per-subfolder images in
            `data_dir`), a prepared TFDS image dataset (`"cifar10"`,
            `"cifar100"`, `"imagenet2012"`, ...), or event data
            (`"cifar10dvs"`, `"dvsgesture"`, `"events"` = a folder of `.npz`
            event files) read from `data_dir` and integrated into
            `num_timesteps` frames.
        data_dir: where the data lies (not needed for `"digits"`).
        image_shape: the model's `(height, width, channels)`.
        num_timesteps: frames per example for event data.
        cache_dir: where event frames are cached (built once).

    Returns:
        `ImageData` whose examples are `(image [H, W, C] float32 0..255, label)`
        or `(frames [T, H, W, 2] float32 counts, label)`.

    Example:
    >>> data = load_dataset("digits", image_shape=(16, 16, 1))
    """
    import tensorflow as tf

    height, width, channels = (int(d) for d in image_shape)
    if name in EVENT_DATASETS:
        return _event_data(name, data_dir, height, num_timesteps, cache_dir)
    if data_dir is None and name != "digits":
        raise ValueError(
            f"Dataset {name!r} needs --data-dir: nothing is downloaded at run time. "
            "For an offline try-out use --dataset digits."
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


def _event_data(name, data_dir, image_size, num_frames, cache_dir):
    from keras_spikformer.data.event_datasets import event_frames_dataset

    if data_dir is None:
        raise ValueError(
            f"Event dataset {name!r} needs --data-dir with the recordings."
        )
    kind = "npz_folder" if name == "events" else name
    splits = {
        split: event_frames_dataset(
            data_dir, kind, num_frames=num_frames, split=split, cache_dir=cache_dir,
            image_size=image_size, shuffle=False,
        )
        for split in ("train", "test")
    }  # fmt: skip
    train, test = splits["train"], splits["test"]
    return ImageData(
        train=train.dataset,
        test=test.dataset,
        num_classes=len(train.class_names),
        class_names=list(train.class_names),
        num_train=train.num_examples,
        num_test=test.num_examples,
    )
