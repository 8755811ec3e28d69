"""Rematerialisation of a whole layer, with its state updated once per step."""

import keras


def check_remat(remat):
    """Returns `remat` as a bool, or raises a `ValueError` naming the fix.

    Args:
        remat: `True` (recompute every stem stage and block in the backward
            pass), `False` or `None` (store activations).

    Returns:
        bool.
    """
    if remat is None or isinstance(remat, bool):
        return bool(remat)
    raise ValueError(
        f"`remat` must be True or False; got {remat!r}. `remat=True` recomputes "
        "every stem stage and block in the backward pass instead of storing "
        "their activations."
    )


class DeferredUpdates(keras.StatelessScope):
    """A stateless scope that collects assignments and reads through.

    Variables assigned inside keep their old value; the new values are in
    `assigned` (and read back inside the scope). Variables in `state_mapping`
    read the value given there; the others read their value from the
    enclosing stateless scope if there is one (the JAX trainer's), else their
    own.
    """

    def __init__(self, state_mapping=None):
        super().__init__(state_mapping=state_mapping, initialize_variables=False)
        self.assigned = {}

    def add_update(self, update):
        super().add_update(update)
        variable, value = update
        self.assigned[id(variable)] = value

    def get_current_value(self, variable):
        value = super().get_current_value(variable)
        if value is None and self.original_scope is not None:
            return self.original_scope.get_current_value(variable)
        return value


def rematerialize(layer, call, *inputs):
    """Runs `call(*inputs)` so that backprop recomputes it instead of storing it.

    Only `inputs` (and the outputs) are kept for the backward pass; every
    activation inside `call` is recomputed from them when the gradient is
    taken (`tf.recompute_grad`, `torch.utils.checkpoint`, `jax_recompute`).
    Variable assignments inside `call` (batch-norm moving statistics) are
    collected instead of applied, returned out of the recomputed function and
    applied once, here: the recomputation in the backward pass assigns
    nothing, so the moving statistics move exactly as in the plain step.
    The recomputation reads the layer's non-trainable variables (moving
    statistics, random seeds) as they were before `call`, not as updated
    since: a layer that reads its moving statistics in training (a
    batch-norm-and-pad) or draws random numbers recomputes the same values.

    Args:
        layer: the layer whose variables `call` may assign.
        call: function of positional tensors only (TensorFlow's
            `recompute_grad` takes no keyword arguments) returning a tensor
            or a structure of tensors.
        *inputs: the tensors passed to `call`.

    Returns:
        The outputs of `call(*inputs)`.

    Example:
    >>> y = rematerialize(layer, lambda x: layer.call(x, training=True), x)
    """
    variables = list(layer.variables)
    assigned = []  # the variables `call` assigns (the same on every run)
    # Copies: torch assigns in place, and the recomputation runs after the
    # new values are assigned below.
    before = [(v, keras.ops.copy(v.value)) for v in variables if not v.trainable]

    def forward(*args):
        with DeferredUpdates(before) as scope:
            outputs = call(*args)
        assigned[:] = [v for v in variables if id(v) in scope.assigned]
        if len(assigned) != len(scope.assigned):
            raise ValueError(
                f"{layer.name}: the rematerialized call assigns variables that "
                "are not the layer's own; pass the layer that owns them."
            )
        return outputs, [scope.assigned[id(v)] for v in assigned]

    if keras.backend.backend() == "jax":
        outputs, values = jax_recompute(forward, *inputs)
    else:
        outputs, values = keras.remat(forward)(*inputs)
    for variable, value in zip(assigned, values, strict=True):
        variable.assign(value)
    return outputs


def jax_recompute(f, *args):
    """`f(*args)` whose JAX gradient recomputes `f` once the cotangent arrives.

    With `jax.checkpoint` (`keras.remat` on JAX), XLA:CPU drops the
    optimisation barrier before common-subexpression elimination and merges
    the recomputation back into the forward pass: nothing is recomputed and
    nothing saved (measured). Here the recomputation's inputs get a real data
    dependency on the cotangent (`x + where(c == c, 0, nan)`, which no
    compiler may fold), as `tf.recompute_grad` does, so it is a different
    computation that can only run when the backward pass reaches `f`.

    Args:
        f: a pure function of JAX arrays (it may close over traced values,
            e.g. the trainer's variables).
        *args: its arguments.

    Returns:
        `f(*args)`.
    """
    import jax
    import jax.numpy as jnp

    converted, consts = jax.closure_convert(f, *args)
    num_args = len(args)

    @jax.custom_vjp
    def run(*inputs):
        return converted(*inputs)

    def forward(*inputs):
        return converted(*inputs), inputs  # keeps only the inputs

    def backward(inputs, cotangents):
        leaf = jax.tree_util.tree_leaves(cotangents)[0]
        first = jnp.reshape(leaf, (-1,))[0].astype("float32")
        zero = jnp.where(first == first, 0.0, jnp.nan)
        tied = [
            x + zero.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
            for x in inputs[:num_args]
        ]
        _, vjp = jax.vjp(converted, *tied, *inputs[num_args:])
        return vjp(cotangents)

    run.defvjp(forward, backward)
    return run(*args, *consts)


def remat_unit(remat, layer, run, *inputs, training=None):
    """`run(*inputs, training=training)`, with `remat` recomputed in backprop.

    With `remat` and in training, `run(*inputs, training=True)` goes through
    `rematerialize`: only `inputs` and the outputs are kept for the backward
    pass, and the batch-norm moving statistics still move once per step.

    Args:
        remat: bool, whether to rematerialize.
        layer: the layer owning every variable that `run` assigns.
        run: function of positional tensors and a `training` keyword.
        *inputs: the tensors passed to `run`.
        training: the training flag.

    Returns:
        The outputs of `run`.

    Example:
    >>> x = remat_unit(True, stem, stage, x, training=True)
    """
    if remat and training:
        return rematerialize(layer, lambda *args: run(*args, training=True), *inputs)
    return run(*inputs, training=training)


class RematMixin:
    """A layer's `remat` argument (validated, in `get_config`) and `remat_call`.

    Put it before the layer's base class; `remat` is then a keyword argument
    of the layer (`False` by default).

    Example:
    >>> class Block(RematMixin, keras.layers.Layer):
    ...     def call(self, x, training=None):
    ...         return self.remat_call(self._forward, x, training=training)
    """

    def __init__(self, *args, remat=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.remat = check_remat(remat)

    def remat_call(self, run, *inputs, training=None):
        """`remat_unit(self.remat, self, run, *inputs, training=training)`."""
        return remat_unit(self.remat, self, run, *inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["remat"] = self.remat
        return config
