"""Finds the weights inside an unpickled checkpoint and turns the rest into
plain metadata.

Training scripts wrap the state dict (`{"state_dict": ..., "optimizer": ...}`,
DDP's `module.` prefix); `select_weights` finds it, `plain_metadata` keeps the
other entries as plain Python data. Both walk untrusted objects, so they
tolerate shared and cyclic references and refuse absurd nesting.
"""

import os
from typing import Any

import numpy as np

from keras_spikformer.convert.checkpoint_errors import CheckpointFormatError, corrupt
from keras_spikformer.convert.torch_pickle import InertObject, TensorRef, TorchDtype

__all__ = ["plain_metadata", "select_weights", "strip_prefix"]

# Where training scripts keep the weights: timm, DeiT, plain DDP wrappers,
# and `sd/` in this project's npz fixtures.
WEIGHT_KEYS = ("state_dict", "model", "module", "sd")
EMA_KEYS = ("state_dict_ema", "model_ema")
DDP_PREFIX = "module."
MAX_DEPTH = 100


def is_tensor(value: Any) -> bool:
    return isinstance(value, (np.ndarray, TensorRef))


def _tensors(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if is_tensor(v)}


def select_weights(
    top: Any, use_ema: bool, path: str | os.PathLike
) -> tuple[str | None, dict[str, Any]]:
    """Finds the weights in a (possibly training) checkpoint.

    Args:
        top: the unpickled top-level object.
        use_ema: look under `EMA_KEYS` instead of `WEIGHT_KEYS`.
        path: the checkpoint, for messages.

    Returns:
        `(key, weights)`: the top-level key (None when `top` is the state
        dict) and a dict of names to tensors.

    Example:
    >>> select_weights({"state_dict": sd, "epoch": 3}, False, "ckpt.pth")[0]
    'state_dict'
    """
    if not isinstance(top, dict):
        raise CheckpointFormatError(
            f"{path} holds a {type(top).__name__}, not a dict of tensors."
        )
    for key in EMA_KEYS if use_ema else WEIGHT_KEYS:
        if weights := _tensors(top.get(key)):
            return key, weights
    keys = sorted(map(str, top))
    if use_ema:
        raise CheckpointFormatError(
            f"{path} has no EMA weights (looked for {list(EMA_KEYS)}); its "
            f"top-level keys are {keys}. Pass use_ema=False for the regular weights."
        )
    if top and all(is_tensor(v) for v in top.values()):
        return None, {str(k): v for k, v in top.items()}
    raise CheckpointFormatError(
        f"{path} holds no tensors: expected a dict of tensors, or one under "
        f"{list(WEIGHT_KEYS)}, but its top-level keys are {keys}."
    )


def strip_prefix(weights: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Removes DDP's `module.` prefix when every name has it."""
    if not all(name.startswith(DDP_PREFIX) for name in weights):
        return weights, None
    return {n.removeprefix(DDP_PREFIX): v for n, v in weights.items()}, DDP_PREFIX


def plain_metadata(others: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The entries of `others` that hold no tensor, as plain Python data.

    `argparse.Namespace` arguments become dicts, torch dtypes strings; a
    reference back into an enclosing object becomes `"<cycle>"`.

    Raises:
        CheckpointFormatError: an entry is nested deeper than `MAX_DEPTH`.
    """
    has_tensor: dict[int, bool] = {}
    memo: dict[int, Any] = {}
    return {
        k: _plain(v, path, (), 0, memo)
        for k, v in others.items()
        if not _has_tensor(v, path, has_tensor, 0)
    }


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, InertObject):
        return [value.args, value.state]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return []


def _check_depth(depth: int, path: str | os.PathLike) -> None:
    if depth > MAX_DEPTH:
        raise corrupt(path, f"an entry is nested more than {MAX_DEPTH} levels deep")


def _has_tensor(value: Any, path: str | os.PathLike, memo: dict, depth: int) -> bool:
    """Whether `value` holds a tensor; `memo` (by id) makes shared objects
    cost once, and an object met again inside itself counts as False."""
    _check_depth(depth, path)
    if is_tensor(value):
        return True
    if id(value) not in memo:
        memo[id(value)] = False
        found = [_has_tensor(v, path, memo, depth + 1) for v in _children(value)]
        memo[id(value)] = any(found)
    return memo[id(value)]


def _plain(
    value: Any,
    path: str | os.PathLike,
    parents: tuple,
    depth: int,
    memo: dict | None = None,
) -> Any:
    """Converts one value; `memo` keeps shared objects linear in time."""
    _check_depth(depth, path)
    memo = {} if memo is None else memo
    if id(value) in parents:
        return "<cycle>"
    if id(value) in memo:
        return memo[id(value)]
    inner = (*parents, id(value))

    def plain(v: Any) -> Any:
        return _plain(v, path, inner, depth + 1, memo)

    if isinstance(value, dict):
        result = {k: plain(v) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        result = type(value)(plain(v) for v in value)
    elif isinstance(value, InertObject):
        if isinstance(value.state, dict) and not value.args:
            result = plain(value.state)
        else:
            result = {"args": plain(value.args), "state": plain(value.state)}
    elif isinstance(value, TorchDtype):
        result = str(value)
    else:
        return value
    memo[id(value)] = result
    return result
