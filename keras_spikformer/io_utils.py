"""File helpers: atomic writes so that an interrupted save never leaves a half file."""

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(directory, overwrite=False):
    """Yields a temporary directory that replaces `directory` on success.

    On an exception the temporary directory is removed and `directory` is
    left as it was.

    Args:
        directory: str or path, the final location.
        overwrite: bool, allow replacing an existing `directory`.

    Example:
    >>> with atomic_directory("out/preset") as tmp:
    ...     (tmp / "config.json").write_text("{}")
    """
    target = Path(directory).expanduser().resolve()
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True (CLI: --overwrite) to "
            "replace it, or choose another directory."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
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


def write_json(path, data):
    """Writes `data` as indented JSON through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path):
    return json.loads(Path(path).read_text())
