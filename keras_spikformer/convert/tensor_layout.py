"""Checks a tensor's layout against its storage before any memory is used.

A pickled tensor is `(storage, offset, shape, strides)`. A crafted file can
point outside the storage, or repeat elements (stride 0, overlapping strides)
so that a few stored bytes become gigabytes once copied out. `check_layout`
refuses both from the numbers alone.
"""

import math
import os

from keras_spikformer.convert.checkpoint_errors import corrupt
from keras_spikformer.convert.torch_pickle import TensorRef

__all__ = ["check_layout"]


def check_layout(
    name: str, ref: TensorRef, storage_bytes: int, path: str | os.PathLike
) -> None:
    """Raises `CheckpointFormatError` unless `ref` reads each element of its
    storage at most once and stays inside it.

    Args:
        name: the tensor's name in the checkpoint, for messages.
        ref: the tensor.
        storage_bytes: size of its storage in bytes.
        path: the checkpoint, for messages.

    Example:
    >>> check_layout("head.weight", ref, storage_bytes=4 * 3840, path="ckpt.pth")
    """
    itemsize = ref.storage.dtype.itemsize
    key = ref.storage.key
    if storage_bytes % itemsize:
        raise corrupt(
            path,
            f"storage {key!r} has {storage_bytes} bytes, not a whole number of "
            f"{ref.storage.dtype} elements",
        )
    numel = storage_bytes // itemsize
    if ref.storage.view is not None:
        start, view_numel = ref.storage.view
        if not (_is_count(start) and _is_count(view_numel)):
            raise corrupt(path, f"storage view {ref.storage.view!r} is not two counts")
        if start + view_numel > numel:
            raise corrupt(
                path,
                f"a view of elements {start}..{start + view_numel} of storage "
                f"{key!r} lies outside its {numel} elements",
            )
        numel = view_numel
    if math.prod(ref.shape) == 0:
        return
    described = (
        f"tensor {name!r} (shape {ref.shape}, strides {ref.stride}, "
        f"offset {ref.offset})"
    )
    reach = 0  # highest element offset that the inner dimensions reach
    for stride, size in sorted(
        (s, n) for n, s in zip(ref.shape, ref.stride, strict=True) if n > 1
    ):
        if stride == 0:
            raise corrupt(
                path,
                f"{described} repeats one element {size} times (stride 0, an "
                "expanded tensor); save tensor.contiguous() instead",
            )
        if stride <= reach:
            raise corrupt(
                path,
                f"{described} reads some elements more than once (an overlapping "
                "view); save tensor.contiguous() instead",
            )
        reach += (size - 1) * stride
    if ref.offset + reach >= numel:
        raise corrupt(
            path,
            f"storage {key!r} holds {numel} elements, but {described} needs "
            f"{ref.offset + reach + 1}",
        )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
