"""Google Drive links, downloaded with `gdown` (the `weights` extra).

Drive answers large files with a confirmation page (it cannot scan them for
viruses) and sometimes with a quota page; `gdown` follows the confirmation.
"""

import contextlib
import re
import urllib.parse

from keras_spikformer.fetch.errors import FetchError

DRIVE_HOSTS = ("drive.google.com", "docs.google.com")
INSTALL_HINT = 'pip install "keras-spikformer[weights]"'
_FILE_PATH = re.compile(r"^/file/(?:u/\d+/)?d/([-\w]{10,})(?:/|$)")
_FILE_ID = re.compile(r"^[-\w]{10,}$")


def is_drive_url(url):
    """Whether `url` is a Google Drive (or Docs) link."""
    return urllib.parse.urlsplit(url).hostname in DRIVE_HOSTS


def drive_file_id(url):
    """The file id of a Drive file link (`/file/d/ID/view`, `uc?id=ID`, `open?id=ID`).

    Raises:
        FetchError: a folder link or a link without a file id.

    Example:
    >>> drive_file_id("https://drive.google.com/file/d/10oH_zkw/view?usp=sharing")
    '10oH_zkw'
    """
    parts = urllib.parse.urlsplit(url)
    if parts.path.startswith("/drive/folders/"):
        raise FetchError(
            f"{url} is a Google Drive folder, not a file: keras-spikformer downloads "
            "one published file. Open the folder in a browser, download the "
            "checkpoint and convert it (`keras-spikformer convert FILE --preset NAME`)."
        )
    match = _FILE_PATH.match(parts.path)
    ids = urllib.parse.parse_qs(parts.query).get("id", [])
    file_id = match.group(1) if match else (ids[0] if len(ids) == 1 else None)
    if file_id is None or not _FILE_ID.match(file_id):
        raise FetchError(f"{url} is a Google Drive link without a file id.")
    return file_id


def download_drive_file(url, part, progress=True):
    """Downloads the Drive file of `url` to `part` (not yet verified).

    Args:
        url: a Drive file link.
        part: the path to write; the caller verifies and renames it.
        progress: show gdown's progress bar.

    Raises:
        FetchError: gdown missing (naming the extra), Drive refusing the
            file (quota, not shared), or the network failing.
    """
    file_id = drive_file_id(url)
    try:
        import gdown
        from gdown.exceptions import FileURLRetrievalError
    except ImportError:
        raise FetchError(
            f"{url} is a Google Drive link; downloading it needs gdown: "
            f"{INSTALL_HINT} (or `pip install gdown`)."
        ) from None
    import requests

    # gdown >= 6 adds DownloadError (truncated transfers) above FileURLRetrievalError.
    failures = (
        getattr(gdown.exceptions, "DownloadError", FileURLRetrievalError),
        requests.RequestException,
        OSError,
    )
    with contextlib.suppress(FileNotFoundError):
        part.unlink()
    try:
        gdown.download(
            id=file_id, output=str(part), quiet=not progress, use_cookies=False
        )
    except FileURLRetrievalError as error:
        reason = " ".join(str(error).split())
        raise FetchError(
            f"Google Drive did not hand out {url}: {reason} (usually its quota page, "
            "'too many users have viewed or downloaded this file recently', or a "
            "file that is no longer shared). Try again later."
        ) from None
    except failures as error:
        raise FetchError(
            f"Cannot download {url} ({type(error).__name__}: {error})."
        ) from None
    if not part.is_file():
        raise FetchError(f"gdown wrote nothing for {url}.")
