"""A preset's published checkpoint on first use: fetched, converted and cached.

Cache layout (`settings.cache_dir()`):

- `checkpoints/<preset>-<key>/<file_name>`: the downloaded checkpoint;
- `presets/<preset>-<key>/`: the converted preset (what `from_preset` loads);
- `downloads/<key>/<name>`: files fetched by `keras-spikformer convert URL`;
- `known_hashes.json`: `{url: sha256}` of first downloads whose metadata
  gives no sha256 (a later download that differs is warned about);
- `locks/`: one lock file per converted preset (one process fetches, the
  others wait for it).

`<key>` is a short hash of the source (URL, file name, sha256): a changed
source gets a new folder.
"""

import contextlib
import hashlib
import urllib.parse
import warnings
from pathlib import Path

from keras_spikformer import presets
from keras_spikformer.fetch import google_drive, http_download, settings
from keras_spikformer.fetch.errors import FetchError
from keras_spikformer.fetch.weights_source import read_weights_source
from keras_spikformer.io_utils import write_json

HASHES_FILE = "known_hashes.json"


def weights_source_of(directory):
    """The `WeightsSource` of a preset directory, or None (no source or no URL)."""
    path = Path(directory) / presets.METADATA_FILE
    if not path.is_file():
        return None
    return read_weights_source(presets.read_json(path), path)


def weights_directory(directory, load_weights=None, progress=True):
    """The directory whose weight files `from_preset` loads.

    `directory` itself when it has weights, when `load_weights` is False or
    when it records no `weights_source`; otherwise the converted preset in
    the cache, fetched and converted first if needed.

    Args:
        directory: a resolved preset directory.
        load_weights: `from_preset`'s argument (None, True or False).
        progress: show progress bars.

    Returns:
        A `Path`.

    Raises:
        FetchError: offline, network or verification failures (one message
            naming the URL, the cache path and the manual route).

    Example:
    >>> weights_directory(presets.resolve("sdt_8_384_imagenet"))
    PosixPath('/home/me/.cache/keras_spikformer/presets/sdt_8_384_imagenet-3be0c1a2f9')
    """
    directory = Path(directory)
    if load_weights is False or (directory / presets.WEIGHTS_FILE).is_file():
        return directory
    source = weights_source_of(directory)
    if source is None:
        return directory
    return fetch_pretrained(directory, source, progress)


def _key(source):
    text = f"{source.url}\n{source.file_name}\n{source.sha256}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def converted_directory(directory, source):
    """Where the converted preset of `directory`'s source is cached."""
    return settings.cache_dir() / "presets" / f"{Path(directory).name}-{_key(source)}"


def fetch_pretrained(directory, source, progress=True):
    """The cached converted preset of `directory`; downloads and converts on first use.

    The conversion target is the preset itself (its config and recipe), so
    every tensor's shape is checked against it.

    Returns:
        The converted preset directory (`Path`).
    """
    directory = Path(directory)
    converted = converted_directory(directory, source)
    if (converted / presets.WEIGHTS_FILE).is_file():
        return presets.check_preset_files(converted)
    with _cache_lock(settings.cache_dir() / "locks" / f"{converted.name}.lock"):
        if (converted / presets.WEIGHTS_FILE).is_file():  # another process made it
            return presets.check_preset_files(converted)
        return _fetch_and_convert(directory, source, converted, progress)


@contextlib.contextmanager
def _cache_lock(path):
    """An exclusive lock on `path` (POSIX `flock`): one process (or thread)
    downloads and converts a preset while the others wait for its result."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic writes still hold
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as error:
        raise FetchError(
            f"cannot write the cache ({error}); set {settings.CACHE_ENV} to a "
            "writable folder."
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_and_convert(directory, source, converted, progress):
    checkpoint = fetch_checkpoint(directory.name, source, progress)
    from keras_spikformer.convert.converter import convert_checkpoint

    try:
        convert_checkpoint(
            checkpoint, converted, preset=directory, use_ema=source.use_ema,
            overwrite=converted.exists(), progress=progress, **source.converter_options,
        )  # fmt: skip
    except (ValueError, OSError) as error:
        raise FetchError(
            f"The checkpoint downloaded for preset {directory.name!r} ({checkpoint}, "
            f"from {source.url}) does not convert: {error}\nDelete {checkpoint} to "
            "download it again."
        ) from None
    return converted


def fetch_checkpoint(name, source, progress=True):
    """The cached checkpoint of preset `name`'s source; downloaded when missing.

    `$KERAS_SPIKFORMER_MIRROR` replaces the authors' host; offline mode and
    network failures raise one `FetchError`.

    Returns:
        The checkpoint's `Path` in the cache.
    """
    path = (
        settings.cache_dir()
        / "checkpoints"
        / f"{name}-{_key(source)}"
        / source.file_name
    )
    if path.is_file():
        return path
    url = settings.mirror_url(name, source.file_name) or source.url
    try:
        digest = download(url, path, source.sha256, source.size, progress)
    except FetchError as error:
        raise FetchError(_unavailable(name, url, path, error)) from None
    if source.sha256 is None:
        remember_hash(source.url, digest)
    return path


def _unavailable(name, url, path, reason):
    return (
        f"Cannot fetch the weights of preset {name!r} from {url}: {reason}\n"
        f"Cache: {path} (none there). By hand: download {url}, then run "
        f"`keras-spikformer convert FILE --preset {name} --output DIR` and load "
        "`from_preset(DIR)`; or pass load_weights=False for a fresh model."
    )


def download(url, destination, sha256=None, size=None, progress=True):
    """Downloads `url` (Drive links through gdown) to `destination`, verified.

    Returns:
        The file's hex sha256.

    Raises:
        FetchError: offline mode, or any failure of the download.
    """
    offline = settings.offline_variable()
    if offline:
        raise FetchError(f"{offline}=1 is set, so nothing is downloaded.")
    destination = Path(destination)
    try:
        if not google_drive.is_drive_url(url):
            return http_download.download_file(url, destination, sha256, size, progress)
        destination.parent.mkdir(parents=True, exist_ok=True)
        part = destination.with_name(destination.name + ".part")
        google_drive.download_drive_file(url, part, progress)
        return http_download.publish(url, part, destination, sha256, size)
    except OSError as error:  # the cache, not the network (those are FetchErrors)
        raise FetchError(
            f"cannot write the cache ({error}); set {settings.CACHE_ENV} to a "
            "writable folder."
        ) from None


def remember_hash(url, digest):
    """Records the first sha256 seen for `url`; warns when a later one differs."""
    path = settings.cache_dir() / HASHES_FILE
    known = presets.read_json(path) if path.is_file() else {}
    if not isinstance(known, dict):
        known = {}
    first = known.get(url)
    if first is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**known, url: digest})
    elif first != digest:
        warnings.warn(
            f"{url} now has sha256 {digest}, but its first download had {first} "
            f"(recorded in {path}): the published file changed, or this one is not "
            "it. Check with the authors before trusting the weights.",
            stacklevel=3,
        )


def fetch_url(url, progress=True):
    """Downloads a checkpoint URL into the cache (`downloads/`), once.

    Returns:
        The file's `Path`.

    Example:
    >>> fetch_url("https://github.com/o/r/releases/download/v1/model.pth")
    """
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    if google_drive.is_drive_url(url):
        name = f"drive-{google_drive.drive_file_id(url)}"
    else:
        name = Path(urllib.parse.urlsplit(url).path).name or "checkpoint"
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:128]
        name = name.lstrip(".") or "checkpoint"
    path = settings.cache_dir() / "downloads" / key / name
    if path.is_file():
        return path
    try:
        digest = download(url, path, progress=progress)
    except FetchError as error:
        raise FetchError(
            f"Cannot download {url}: {error}\nCache: {path} (none there). Download "
            "the file yourself and pass its path instead of the URL."
        ) from None
    remember_hash(url, digest)
    return path
