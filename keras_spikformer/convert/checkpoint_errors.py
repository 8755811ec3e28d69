"""The errors a checkpoint file can raise, and the memory budget of reading one.

Everything an untrusted file can trigger ends in one of two errors:
`UnsafeCheckpointError` (it asked for code to run; nothing ran) or
`CheckpointFormatError` (it is missing, corrupt, or asks for more memory
than its size allows).
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from keras_spikformer.convert.torch_pickle import UnsafeCheckpointError

__all__ = [
    "CheckpointFormatError",
    "MemoryBudget",
    "UnsafeCheckpointError",
    "corrupt",
    "format_errors",
]

# Decoded bytes a file may hold beyond its own size: room for compressed npz
# members and tensors that share a storage, in small files.
BUDGET_SLACK_BYTES = 32 * 2**20


class CheckpointFormatError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or holds no tensors."""


def corrupt(path: str | os.PathLike, what: str) -> CheckpointFormatError:
    """A `CheckpointFormatError` saying what is wrong with the file.

    Args:
        path: the checkpoint.
        what: what is wrong, e.g. `"storage 'a/data/3' is missing"`.

    Returns:
        The error (to raise).

    Example:
    >>> raise corrupt("model.pth", "2 pickle records, expected 1")
    """
    return CheckpointFormatError(
        f"corrupt checkpoint: {what} (in {path}). The file is damaged or was not "
        "written by torch.save, safetensors or numpy; download or save it again."
    )


@contextlib.contextmanager
def format_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turns any other failure while parsing `path` into `corrupt(...)`."""
    try:
        yield
    except (CheckpointFormatError, UnsafeCheckpointError):
        raise
    except Exception as error:  # Anything an untrusted file can trigger.
        raise corrupt(path, f"{type(error).__name__}: {error}") from error


class MemoryBudget:
    """Bytes a reader may allocate for one file: its size plus a fixed slack.

    Every tensor is checked against its storage before anything is
    allocated, so a small file cannot make the reader build large arrays
    (for example a stride-0 expansion of one element to 20000x20000).

    Args:
        path: the checkpoint; its size sets the budget.
        slack: int, default `BUDGET_SLACK_BYTES`. Bytes allowed beyond it.

    Example:
    >>> MemoryBudget("model.pth").check(4 * 10**6, "the tensors")
    """

    def __init__(self, path: str | os.PathLike, slack: int = BUDGET_SLACK_BYTES):
        self.path = Path(path)
        self.file_size = self.path.stat().st_size
        self.limit = self.file_size + slack

    def check(self, nbytes: int, what: str, fix: str = "") -> None:
        """Raises `CheckpointFormatError` if `nbytes` exceed the budget.

        Args:
            nbytes: bytes that reading `what` would allocate.
            what: what they are for, e.g. `"its 3000 tensors"`.
            fix: what to do if the file is genuine; defaults to saving each
                tensor on its own, uncompressed storage.
        """
        if nbytes > self.limit:
            raise corrupt(
                self.path,
                f"{what} would take {_size(nbytes)}, more than a file of "
                f"{_size(self.file_size)} can hold (limit: the file size + "
                f"{_size(self.limit - self.file_size)}); nothing was allocated. "
                + (fix or _SAVE_SEPARATELY),
            )


_SAVE_SEPARATELY = (
    "If the file is genuine (compressed, or many tensors sharing one storage), "
    "save each tensor on its own storage without compression"
)


def _size(nbytes: int) -> str:
    if nbytes >= 2**70:
        return f"~10^{len(str(nbytes)) - 1} bytes"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"
