"""Extracting downloaded archives (zip, tar, tar.gz) without trusting them.

Only regular files and folders are written, each strictly inside the target
folder: absolute names, `..` parts, backslashes, links (symbolic or hard),
devices and FIFOs are refused before anything is written, as are archives
with more than `max_members` entries or more than `max_bytes` in all
(counted on the bytes actually written, not on the sizes the archive
declares). An existing link at a destination is never followed.
"""

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 1 << 20


class UnsafeArchiveError(ValueError):
    """An archive entry that would escape the target, or an archive too large."""


def _check_name(archive, name):
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or ".." in path.parts
        or (path.parts and ":" in path.parts[0])
    ):
        raise UnsafeArchiveError(
            f"{archive} holds the entry {name!r}, whose path leaves the target "
            "folder; nothing was extracted from it. The file is not the published "
            "archive: delete it and download it again."
        )
    return path


def _members(archive):
    """`(name, kind, size, opener)` for each entry; kind is 'dir' or 'file'."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode) or (mode and stat.S_IFMT(mode) not in (
                    0, stat.S_IFREG, stat.S_IFDIR,
                )):  # fmt: skip
                    yield info.filename, "link", 0, None
                elif info.is_dir():
                    yield info.filename, "dir", 0, None
                else:
                    yield (
                        info.filename,
                        "file",
                        info.file_size,
                        (lambda info=info: z.open(info)),
                    )
        return
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as error:
        raise UnsafeArchiveError(
            f"{archive} is neither a zip nor a tar archive ({error}); delete it and "
            "download it again."
        ) from None
    with tar:
        for member in tar:
            if member.isdir():
                yield member.name, "dir", 0, None
            elif member.isreg():
                yield (
                    member.name,
                    "file",
                    member.size,
                    (lambda member=member: tar.extractfile(member)),
                )
            else:
                yield member.name, "link", 0, None


def extract_archive(archive, target, max_bytes, max_members):
    """Extracts a zip or tar archive into `target`, refusing anything unsafe.

    Args:
        archive: the archive file.
        target: the folder to extract into (created).
        max_bytes: the most bytes written in all.
        max_members: the most entries.

    Returns:
        The number of files written.

    Raises:
        UnsafeArchiveError: an entry leaving `target`, a link or special
            file, too many entries or bytes. Entries are checked while
            streaming, so a refused archive may leave the files before the
            bad entry; they are plain files inside `target`.

    Example:
    >>> extract_archive("airplane.zip", "data/cifar10dvs", 2**32, 4000)  # doctest: +SKIP
    1000
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    written = files = 0
    for count, (name, kind, size, opener) in enumerate(_members(archive), 1):
        if count > max_members:
            raise UnsafeArchiveError(
                f"{archive} holds more than {max_members:,} entries, more than the "
                "published archive; extraction stopped. Delete it and download it "
                "again."
            )
        path = _check_name(archive, name)
        if kind == "link":
            raise UnsafeArchiveError(
                f"{archive} holds {name!r}, a link or special file; the published "
                "archive holds only files and folders, so nothing more is extracted."
            )
        dest = target.joinpath(*path.parts)
        for parent in [*reversed(dest.parents), dest]:
            if parent.is_symlink() and (parent == dest or target in parent.parents):
                raise UnsafeArchiveError(
                    f"{parent} is a link; extracting {archive} there could write "
                    "outside the target. Remove the link and run again."
                )
        if kind == "dir":
            dest.mkdir(parents=True, exist_ok=True)
            continue
        if written + size > max_bytes:
            raise _too_big(archive, max_bytes)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with opener() as src, open(part, "wb") as out:
            while chunk := src.read(CHUNK_BYTES):
                written += len(chunk)
                if written > max_bytes:
                    out.close()
                    os.unlink(part)
                    raise _too_big(archive, max_bytes)
                out.write(chunk)
        os.replace(part, dest)
        files += 1
    return files


def _too_big(archive, max_bytes):
    return UnsafeArchiveError(
        f"{archive} expands to more than {max_bytes:,} bytes, more than the "
        "published archive; extraction stopped. Delete it and download it again."
    )
