"""Moving between `[batch, time, ...]` and time folded into batch, `[batch * time, ...]`."""

from keras import ops


def fold_time(x):
    """`[batch, time, *rest]` -> `[batch * time, *rest]` (batch-major)."""
    return ops.reshape(x, (-1,) + tuple(x.shape[2:]))


def unfold_time(x, num_timesteps):
    """`[batch * time, *rest]` -> `[batch, time, *rest]`."""
    return ops.reshape(x, (-1, num_timesteps) + tuple(x.shape[1:]))


def folded_shape(shape):
    """Static shape of `fold_time` applied to a tensor of `shape`."""
    batch, time = shape[0], shape[1]
    folded = None if batch is None or time is None else batch * time
    return (folded,) + tuple(shape[2:])
