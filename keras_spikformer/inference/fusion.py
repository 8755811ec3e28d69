"""Fused inference: every batch norm that directly follows a dense/conv layer is
folded into that layer's kernel and bias."""

import keras
import numpy as np

from keras_spikformer.inference.fusion_rules import folding_pairs

LINEAR_TYPES = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def folded_weights(linear, bn, kernel=None, bias=None):
    """The kernel and bias of `bn(linear(x))` (inference) as one linear layer.

    With `scale = gamma / sqrt(moving_variance + epsilon)`:
    `kernel' = kernel * scale` (per output channel) and
    `bias' = (bias - moving_mean) * scale + beta`, computed in float64 and
    rounded once to the variables' dtype.

    Args:
        linear: a built `Dense`, `Conv2D` or `DepthwiseConv2D`.
        bn: the built `BatchNormalization` applied to its output (last axis).
        kernel, bias: float64 arrays to use instead of `linear`'s own weights
            (a linear layer that already absorbed a batch norm).

    Returns:
        `(kernel, bias)` float64 numpy arrays.

    Example:
    >>> kernel, bias = folded_weights(unit.synapse, unit.bn)
    """
    if not isinstance(linear, LINEAR_TYPES):
        raise TypeError(
            f"Cannot fold a batch norm into {type(linear).__name__} "
            f"{linear.name!r}; only Dense, Conv2D and DepthwiseConv2D are folded."
        )
    ndim = getattr(bn.input_spec, "ndim", None)
    if bn.axis != -1 and (ndim is None or bn.axis != ndim - 1):
        raise ValueError(
            f"{bn.name} normalises axis {bn.axis}; only batch norms over the last "
            "(channels) axis are folded."
        )
    mean = _float64(bn.moving_mean)
    channels = mean.shape[0]
    gamma = _float64(bn.gamma) if bn.scale else np.ones(channels)
    beta = _float64(bn.beta) if bn.center else np.zeros(channels)
    scale = gamma / np.sqrt(_float64(bn.moving_variance) + bn.epsilon)
    if kernel is None:
        kernel = _float64(linear.kernel)
        bias = _float64(linear.bias) if linear.use_bias else np.zeros(channels)
    if isinstance(linear, keras.layers.DepthwiseConv2D):
        # [kh, kw, in, multiplier]: output channel `c * multiplier + m`.
        folded = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        folded = kernel * scale
    return folded, (bias - mean) * scale + beta


def _float64(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float64)


def _sublayer(owner, dotted):
    for name in dotted.split("."):
        owner = getattr(owner, name)
    return owner


def _biased_copy(linear, parent_path):
    """A copy of `linear` with a bias, built under `parent_path` (same variable
    paths as the original)."""
    config = {**linear.get_config(), "use_bias": True, "bias_initializer": "zeros"}
    layer = type(linear).from_config(config)
    layer._parent_path = parent_path
    if isinstance(layer, keras.layers.Dense):
        layer.build((None, linear.kernel.shape[0]))
    else:
        layer.build((None, None, None, linear.kernel.shape[2]))
    return layer


def _replace_sublayer(owner, name, new):
    """Sets `owner.<name> = new`, untracking the old layer (its variables go)."""
    tracker = owner._tracker
    locked = tracker.locked
    tracker.unlock()
    tracker.untrack(getattr(owner, name))
    setattr(owner, name, new)
    if locked:
        tracker.lock()


def _next_folds(model):
    """Foldable `(owner, linear, bn)` triples, deepest owners first."""
    triples = [
        (layer, linear, bn)
        for layer in model._flatten_layers(include_self=False)
        for linear, bn in folding_pairs(layer)
    ]
    return sorted(triples, key=lambda t: -t[0].path.count("/"))


def fold_into(owner, linear_name, bn_name):
    """Folds `owner.<bn_name>` into the layer `owner.<linear_name>` in place.

    The linear layer becomes a biased copy holding the folded weights and the
    batch norm an `Identity`, so `bn(linear(x))` computes `linear'(x)`.

    Args:
        owner: the layer holding the batch norm.
        linear_name: attribute path of the dense/conv layer (`"synapse"`,
            or `"q_conv.conv2"` for one inside a sub-layer).
        bn_name: attribute name of the batch norm that directly follows it.
    """
    holder_name, _, attr = linear_name.rpartition(".")
    holder = _sublayer(owner, holder_name) if holder_name else owner
    linear, bn = getattr(holder, attr), getattr(owner, bn_name)
    kernel, bias = folded_weights(linear, bn)
    fused = _biased_copy(linear, holder.path)
    dtype = keras.backend.standardize_dtype(fused.kernel.dtype)
    fused.kernel.assign(kernel.astype(dtype))
    fused.bias.assign(bias.astype(dtype))
    identity = keras.layers.Identity(name=bn.name, dtype=bn.dtype_policy)
    _replace_sublayer(holder, attr, fused)
    _replace_sublayer(owner, bn_name, identity)


def fuse(model):
    """An inference-only copy of `model` with its batch norms folded.

    Every batch norm that directly follows a dense or convolution layer (see
    `fusion_rules`) is folded into that layer's kernel and bias (see
    `folded_weights`); chains (a batch norm after a folded one) fold in turn.
    The copy is frozen (`trainable=False`), holds no state for those batch
    norms and is meant for `predict` and `export`, not for training or `save`
    (save the unfused model). Folding changes the float rounding of the
    pre-activations (~1e-7 relative), so a membrane potential within that
    distance of a threshold can fire differently; `tests/test_fused_inference.py`
    checks every spike of the reference fixtures and a trained preset.

    Args:
        model: a built backbone or classifier of this package.

    Returns:
        A new model of the same class (`fused.fold_plan` lists the folds);
        `model` is left unchanged.

    Example:
    >>> fused = keras_spikformer.inference.fuse(model)
    >>> logits = fused.predict(images)
    """
    if not model.built:
        raise ValueError(f"{model.name} is not built; build or call it before fusing.")
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    plan = []
    while folds := _next_folds(clone):
        for owner, linear_name, bn_name in folds:
            fold_into(owner, linear_name, bn_name)
            plan.append((owner.path, linear_name, bn_name))
    clone.trainable = False
    if keras.backend.backend() == "torch":
        for layer in clone._flatten_layers(include_self=True):
            layer._track_variables()  # drop the removed variables from torch's view
    clone.fold_plan = plan
    return clone


def refresh(fused, model):
    """Re-folds `model`'s current weights into `fused` (a `fuse(model)` copy).

    Cheaper than `fuse` (no new model, no retracing of compiled functions):
    use it after `model` trained further.

    Args:
        fused: the model `fuse(model)` returned.
        model: the unfused model it came from.

    Example:
    >>> refresh(fused, model)
    """
    source = {v.path: v for v in model.variables}
    for variable in fused.variables:
        if variable.path in source:
            variable.assign(source[variable.path])
    layers = {layer.path: layer for layer in model._flatten_layers()}
    targets = {layer.path: layer for layer in fused._flatten_layers()}
    folded = {}  # linear path -> (kernel, bias) after the folds so far
    for owner_path, linear_name, bn_name in fused.fold_plan:
        owner = layers[owner_path]
        linear = _sublayer(owner, linear_name)
        target = _sublayer(targets[owner_path], linear_name)
        dtype = keras.backend.standardize_dtype(target.kernel.dtype)
        kernel, bias = folded.get(linear.path, (None, None))
        kernel, bias = folded_weights(linear, getattr(owner, bn_name), kernel, bias)
        # Rounded at every fold, as `fuse` stores each fold in the variables.
        kernel, bias = kernel.astype(dtype), bias.astype(dtype)
        folded[linear.path] = kernel.astype(np.float64), bias.astype(np.float64)
        target.kernel.assign(kernel)
        target.bias.assign(bias)
