"""One file over http(s): progress bar, resume, verification, atomic rename.

The bytes go to `<file>.part` (with `<file>.part.json` recording the URL, the
total size and the server's ETag/Last-Modified); only a complete, verified
file is renamed to its final name, so an interrupted download is resumed (the
server must answer the Range request for the same file) or restarted, never
used.
"""

import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from keras_spikformer.fetch.errors import FetchError
from keras_spikformer.version import __version__

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
ATTEMPTS = 3
USER_AGENT = f"keras-spikformer/{__version__}"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Interrupted(Exception):
    """A transfer that stopped before the end (retried, then reported)."""


def file_sha256(path):
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def looks_like_html(path):
    """Whether a downloaded file is a web page (checkpoints are zip or pickle)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def html_error(url):
    return FetchError(
        f"{url} served an HTML page instead of the file (on Google Drive: its "
        "download-quota page, 'too many users have viewed or downloaded this file "
        "recently', or a confirmation page; elsewhere a login page or a moved "
        "link). Nothing was kept. Try again later, or open the URL in a browser "
        "and download the file yourself."
    )


def download_file(url, destination, sha256=None, size=None, progress=True,
                  attempts=ATTEMPTS, timeout=TIMEOUT_S):  # fmt: skip
    """Downloads `url` to `destination` atomically; returns the file's sha256.

    Args:
        url: an http(s):// URL.
        destination: the final path; written only once the file is complete
            and verified.
        sha256: expected hex digest, or None.
        size: expected bytes, or None.
        progress: show a progress bar (MiB).
        attempts: transfers tried (each resumes the last) before giving up.
        timeout: seconds without data before a transfer counts as interrupted.

    Returns:
        The hex sha256 of the file.

    Raises:
        FetchError: HTTP errors (404...), unreachable hosts, an HTML page
            instead of the file, a size or sha256 mismatch (the file is
            deleted; both hashes are named), or a transfer interrupted
            `attempts` times (the partial file is kept for the next try).

    Example:
    >>> download_file("https://host/w.pth", Path("cache/w.pth"), sha256=None)
    '3f1c...'
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    state = destination.with_name(destination.name + ".part.json")
    reason = None
    for _ in range(attempts):
        try:
            _transfer(url, part, state, timeout, progress)
            break
        except Interrupted as interrupted:
            reason = interrupted
    else:
        kept = part.stat().st_size if part.is_file() else 0
        raise FetchError(
            f"The download of {url} was interrupted {attempts} times (last: {reason}); "
            f"{kept:,} bytes are kept in {part}, and the next try resumes from there "
            "(the partial file is never used as the checkpoint)."
        )
    return publish(url, part, destination, sha256, size, state)


def publish(url, part, destination, sha256=None, size=None, state=None):
    """Verifies a complete download at `part` and renames it to `destination`.

    Returns:
        The hex sha256 of the file.

    Raises:
        FetchError: an HTML page, a size or a sha256 mismatch (the file is
            deleted first).
    """
    problem = None
    if looks_like_html(part):
        problem = html_error(url)
    elif size is not None and part.stat().st_size != size:
        problem = FetchError(
            f"{url} gave {part.stat().st_size:,} bytes, but the preset's metadata "
            f"says the file has {size:,}; the file was deleted. Try again; if it "
            "persists, the published file changed."
        )
    digest = None if problem else file_sha256(part)
    if digest is not None and sha256 is not None and digest != sha256:
        problem = FetchError(
            f"sha256 mismatch for {url}: expected {sha256}, got {digest}. The file "
            "was deleted: it is damaged, or not the published checkpoint."
        )
    if problem is not None:
        _discard(part, state)
        raise problem
    os.replace(part, destination)
    if state is not None:
        with contextlib.suppress(FileNotFoundError):
            state.unlink()
    return digest


def _discard(part, state):
    for path in (part, state):
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _saved_state(url, part, state):
    """The recorded `{url, total, validator}` of a partial file that may be resumed."""
    try:
        saved = json.loads(state.read_text())
    except (OSError, ValueError):
        saved = None
    if not part.is_file() or not isinstance(saved, dict) or saved.get("url") != url:
        _discard(part, state)
        return {}
    return saved


def _transfer(url, part, state, timeout, progress):
    saved = _saved_state(url, part, state)
    offset = part.stat().st_size if saved else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    response = _open(request, url, timeout, offset, part, state)
    with response:
        headers = response.headers
        if "text/html" in headers.get("Content-Type", "").lower():
            raise html_error(url)
        length = headers.get("Content-Length", "")
        length = int(length) if length.isdigit() else None
        validator = headers.get("ETag") or headers.get("Last-Modified")
        if response.status == 206:
            match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
            same = (
                match is not None
                and int(match.group(1)) == offset
                and str(saved.get("total")) == match.group(3)
                and saved.get("validator") == validator
            )
            if not same:  # another file, or another version: start again
                _discard(part, state)
                raise Interrupted(f"{url} changed on the server; restarting")
        else:
            offset = 0
        total = None if length is None else offset + length
        state.write_text(
            json.dumps({"url": url, "total": total, "validator": validator})
        )
        _copy(response, part, offset, total, progress)


def _open(request, url, timeout, offset, part, state):
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            _discard(part, state)
            raise Interrupted("the server refused to resume; restarting") from None
        raise FetchError(
            f"{url} answered HTTP {error.code} ({error.reason}): the file is not "
            "there (moved or removed upstream, or a wrong mirror)."
        ) from None
    except (TimeoutError, ConnectionResetError, http.client.RemoteDisconnected) as e:
        raise Interrupted(f"{type(e).__name__}: {e}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(f"Cannot reach {url} ({reason}).") from None


def _copy(response, part, offset, total, progress):
    bar = _progress_bar(total) if progress else None
    received = offset
    with open(part, "ab" if offset else "wb") as f:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (http.client.HTTPException, OSError) as e:
                raise Interrupted(f"{type(e).__name__}: {e}") from None
            if not chunk:
                break
            f.write(chunk)
            received += len(chunk)
            if bar is not None:
                bar.update(received >> 20)
    if total is not None and received < total:
        raise Interrupted(
            f"the connection closed after {received:,} of {total:,} bytes"
        )
    if bar is not None and total is not None:
        bar.update(bar.target, finalize=True)


def _progress_bar(total):
    import keras

    target = None if total is None else max(1, math.ceil(total / 2**20))
    return keras.utils.Progbar(target, unit_name="MiB")
