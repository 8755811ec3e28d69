"""TFDS image datasets prepared on first use, with TFDS's own download.

`prepared_builder(name, data_dir)` returns a TFDS builder whose data are
prepared in `data_dir` (TFDS's data directory when None: `$TFDS_DATA_DIR`,
else `~/tensorflow_datasets`). A prepared dataset is read as it is, offline.
A missing one is downloaded and prepared by TFDS's `download_and_prepare`
(from the dataset's own hosts, with TFDS's progress bars), unless
`KERAS_SPIKFORMER_OFFLINE=1` (or `HF_HUB_OFFLINE=1`) is set: then the error
says so before anything reaches the network. `imagenet2012` is never
downloaded (its licence asks for a manual download): the error names the two
tar files and the folder to put them in; once there they are prepared
offline.
"""

from pathlib import Path

IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def default_data_dir():
    """TFDS's data directory: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.

    Example:
    >>> default_data_dir()  # doctest: +SKIP
    '/home/me/tensorflow_datasets'
    """
    import tensorflow_datasets as tfds

    return tfds.core.constants.get_default_data_dir()


def _unknown(name, data_dir, error):
    lines = str(error).splitlines()  # TFDS lists every dataset: keep the gist
    hint = [ln.strip() for ln in lines if ln.strip().startswith("Did you mean")]
    return FileNotFoundError(
        f"{name!r} is neither a TFDS dataset nor prepared in {data_dir} "
        f"({' '.join(lines[:1] + hint)}). Check the name against "
        "`tfds.list_builders()`, or use --dataset folder for a folder of images."
    )


def _imagenet_manual_error(name, data_dir, manual):
    missing = [t for t in IMAGENET_TARS if not (manual / t).is_file()]
    return FileNotFoundError(
        f"{name} is not prepared in {data_dir} and is never downloaded (its licence "
        f"asks for a manual download): get {' and '.join(IMAGENET_TARS)} from "
        f"https://image-net.org (missing: {', '.join(missing)}), put them in "
        f"{manual}, and run again: they are then prepared there, offline."
    )


def _offline_error(name, data_dir, variable):
    return FileNotFoundError(
        f"{name} is not prepared in {data_dir}, and {variable}=1 forbids "
        f"downloading it. Unset {variable} to let TFDS download and prepare it "
        f"there, or run `tfds build {name} --data_dir {data_dir}` where there is "
        "internet and copy the folder over."
    )


def _mocked_by_tfds(tfds):
    """Whether `tfds.testing.mock_data` is active (tests, the tutorials' --smoke):
    it replaces `download_and_prepare` with a no-op and serves random examples,
    so nothing is downloaded, prepared or read from `data_dir`."""
    method = getattr(tfds.core.DatasetBuilder, "download_and_prepare", None)
    return "mock" in getattr(method, "__qualname__", "")


def prepared_builder(name, data_dir=None):
    """A TFDS builder for `name` prepared in `data_dir`, downloaded if missing.

    Args:
        name: a TFDS name (`"cifar10"`, `"cifar100"`, `"mnist"`, ...).
        data_dir: the TFDS data directory (created if needed); None for TFDS's
            default (`default_data_dir()`).

    Returns:
        `(builder, data_dir)`, the builder prepared.

    Raises:
        FileNotFoundError: an unknown name; `imagenet2012` without its manual
            tar files; a missing dataset while offline; a failed download
            (the message names the dataset and the folder).

    Example:
    >>> builder, where = prepared_builder("cifar10")  # doctest: +SKIP
    """
    import tensorflow_datasets as tfds

    from keras_spikformer.fetch.settings import offline_variable

    data_dir = Path(data_dir or default_data_dir()).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise FileNotFoundError(
            f"--data-dir {str(data_dir)!r} is not a directory: pass the TFDS data "
            "directory (a folder), or leave --data-dir out for TFDS's default."
        )
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
    except (tfds.core.registered.DatasetNotFoundError, FileNotFoundError) as error:
        raise _unknown(name, data_dir, error) from error
    if builder.is_prepared() or _mocked_by_tfds(tfds):
        return builder, data_dir
    manual = data_dir / "manual"
    if name == "imagenet2012" or builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        if name == "imagenet2012" and not all(
            (manual / t).is_file() for t in IMAGENET_TARS
        ):
            raise _imagenet_manual_error(name, data_dir, manual)
    elif offline_variable():
        raise _offline_error(name, data_dir, offline_variable())
    data_dir.mkdir(parents=True, exist_ok=True)
    config = tfds.download.DownloadConfig(
        manual_dir=str(manual),
        try_download_gcs=False,  # the dataset's own hosts, as `tfds build`
    )
    try:
        builder.download_and_prepare(download_config=config)
    except ModuleNotFoundError as error:  # e.g. etils[epath]'s importlib_resources
        raise FileNotFoundError(
            f"TFDS cannot prepare {name}: the module {error.name!r} is missing "
            f"(a dependency of tensorflow-datasets). `pip install {error.name}` "
            "and run again."
        ) from error
    except (OSError, AssertionError, tfds.core.download.DownloadError) as error:
        raise FileNotFoundError(
            f"TFDS could not download and prepare {name} in {data_dir}: {error}. "
            f"Check the connection and run again (TFDS resumes), or run `tfds build "
            f"{name} --data_dir {data_dir}` where there is internet and copy the "
            "folder over."
        ) from error
    return builder, data_dir
