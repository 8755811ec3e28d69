"""Tensor-parallel layout of Spikformer variables (Megatron-style pairs)."""

import keras

MODEL_AXIS = "model"
# Variable paths may carry a prefix when the model is nested in another one.
_PREFIX = r"(?:.*/)?"


def get_layout_map(device_mesh, model_axis=MODEL_AXIS, shard_convs=True):
    """Tensor-parallel `keras.distribution.LayoutMap` for Spikformer variables.

    Megatron-style pairs inside every block, so each pair needs one all-reduce:

    - attention `q`, `k`, `v` and MLP `fc1`: kernel split on its output axis
      `(None, model)`; their bias and batch norm (`gamma`, `beta`, moving
      statistics, all per output feature) split the same way `(model,)`.
    - attention `proj` and MLP `fc2`: kernel split on its input axis
      `(model, None)`; bias and batch norm replicated (they act on the summed
      output).
    - patch-splitting convolutions (`stage_*`, `rpe`), with `shard_convs`:
      kernel split on its output channels `(None, None, None, model)`, batch
      norm likewise. Otherwise replicated.
    - everything else (the classifier head) replicated.

    Every sharded size (hidden dim, MLP dim, stem channels) must be divisible
    by the model-axis size; keep `num_heads` divisible by it too so that each
    device holds whole heads. The zoo's large presets (hidden 384..768, stem
    channels from hidden / 8) take model axes of 2, 4 or 8.

    Args:
        device_mesh: `keras.distribution.DeviceMesh` with an axis named
            `model_axis`.
        model_axis: str, the mesh axis to shard over. Defaults to `"model"`.
        shard_convs: bool, also shard the stem convolutions. Defaults to `True`.

    Returns:
        A `keras.distribution.LayoutMap`.

    Example:
    >>> devices = keras.distribution.list_devices()  # e.g. 8
    >>> mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
    >>> distribution = keras.distribution.ModelParallel(
    ...     layout_map=get_layout_map(mesh), batch_dim_name="batch")
    """
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"The device mesh has axes {list(device_mesh.axis_names)}, not "
            f"{model_axis!r}; build it with axis_names=('batch', {model_axis!r}) or "
            "pass model_axis=<one of its axes>."
        )
    split_out = _PREFIX + r"block_\d+/(?:attn/[qkv]|mlp/fc1)/"
    split_in = _PREFIX + r"block_\d+/(?:attn/proj|mlp/fc2)/"
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[split_out + r"dense/kernel"] = (None, model_axis)
    layout_map[split_out + r"(?:dense/bias|bn/\w+)"] = (model_axis,)
    layout_map[split_in + r"dense/kernel"] = (model_axis, None)
    if shard_convs:
        stem = _PREFIX + r"patch_embed/(?:stage_\d+|rpe)/"
        layout_map[stem + r"conv/kernel"] = (None, None, None, model_axis)
        layout_map[stem + r"(?:conv/bias|bn/\w+)"] = (model_axis,)
    return layout_map
