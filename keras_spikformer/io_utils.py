"""File helpers: atomic writes so that an interrupted save never leaves a half file."""

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(directory, overwrite=False, owned=None):
    """Yields a temporary directory that replaces `directory` on success.

    On an exception (Ctrl-C, SIGTERM included) the temporary directory is
    removed and `directory` is left as it was. Nothing that is not ours is
    ever replaced: an existing `directory` is replaced only with `overwrite`
    and only when `owned` recognises it as a directory this library wrote.
    Symbolic links, files, the current directory (or one holding it) and the
    preset zoo are never replaced.

    Args:
        directory: str or path, the final location.
        overwrite: bool, allow replacing an existing `directory`.
        owned: `(description, predicate)`: `predicate(path)` is true for a
            directory of ours of this kind (e.g. a preset), and `description`
            names that kind in errors. `None`: nothing is replaced.

    Example:
    >>> with atomic_directory("out/preset") as tmp:
    ...     (tmp / "config.json").write_text("{}")
    """
    target = check_writable_directory(directory, overwrite, owned)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would outlive the rename
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable_directory(directory, overwrite=False, owned=None):
    """`atomic_directory`'s checks alone, to run before heavy work.

    Args:
        directory, overwrite, owned: as for `atomic_directory`.

    Returns:
        The absolute target path.

    Raises:
        FileExistsError: naming the directory, why it is refused and the fix.

    Example:
    >>> check_writable_directory("runs/report", overwrite=True, owned=REPORT)
    """
    target = Path(os.path.abspath(Path(directory).expanduser()))
    _refuse_zoo(target)
    if os.path.lexists(target):
        _check_replaceable(target, overwrite, owned)
    return target


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _refuse_zoo(target):
    from keras_spikformer.presets import zoo_dir

    try:
        zoo = zoo_dir().resolve()
    except FileNotFoundError:
        return
    if Path(os.path.realpath(target)).is_relative_to(zoo):
        raise FileExistsError(
            f"{target} is inside the preset zoo ({zoo}), which ships with "
            "keras-spikformer and is never written to; choose a directory of yours."
        )


def _check_replaceable(target, overwrite, owned):
    if not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True (CLI: --overwrite) to "
            "replace it, or choose another directory."
        )
    if target.is_symlink():
        raise FileExistsError(
            f"{target} is a symbolic link (to {os.path.realpath(target)}); refusing "
            "to replace it or what it points to. Give a real directory path."
        )
    if not target.is_dir():
        raise FileExistsError(
            f"{target} is a file, not a directory; refusing to replace it. Choose "
            "another output directory."
        )
    cwd = Path(os.getcwd()).resolve()
    if cwd.is_relative_to(target.resolve()):
        raise FileExistsError(
            f"{target} is the current directory or holds it; refusing to replace it. "
            "Give a new subdirectory as the output."
        )
    description, predicate = owned or ("directory written by keras-spikformer", None)
    if predicate is None or not predicate(target):
        raise FileExistsError(
            f"{target} exists and is not a {description} (it holds other files), so "
            "--overwrite / overwrite=True will not replace it: nothing of yours is "
            "deleted. Choose a new directory, or remove it yourself."
        )


def is_owned_directory(directory, required, allowed):
    """Whether `directory` holds the `required` files and only `allowed` names.

    `allowed` holds names and `*.ext` patterns. Used as an `owned` predicate
    for `atomic_directory`: a directory with anything else in it is the
    user's, not ours.

    Example:
    >>> is_owned_directory("report", ["report.json"], ["report.json", "*.png"])
    """
    directory = Path(directory)
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return False
    return all(n in names for n in required) and all(
        any(fnmatch.fnmatchcase(n, pattern) for pattern in allowed) for n in names
    )


def write_json(path, data):
    """Writes `data` as indented JSON through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path):
    return json.loads(Path(path).read_text())
