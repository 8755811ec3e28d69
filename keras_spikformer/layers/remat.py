"""Rematerialisation of a whole layer, with its state updated once per step."""

import keras


def check_remat(remat):
    """Returns `remat` as a bool, or raises a `ValueError` naming the fix.

    Args:
        remat: `True` (recompute every block in the backward pass), `False`
            or `None` (store activations).

    Returns:
        bool.
    """
    if remat is None or isinstance(remat, bool):
        return bool(remat)
    raise ValueError(
        f"`remat` must be True or False; got {remat!r}. `remat=True` recomputes "
        "every block in the backward pass instead of storing its activations."
    )


class DeferredUpdates(keras.StatelessScope):
    """A stateless scope that collects assignments and reads through.

    Variables assigned inside keep their old value; the new values are in
    `assigned`. Variables not assigned read their value from the enclosing
    stateless scope if there is one (the JAX trainer's), else their own.
    """

    def __init__(self):
        super().__init__(initialize_variables=False)
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
    taken (`keras.remat`: `tf.recompute_grad`, `jax.checkpoint`,
    `torch.utils.checkpoint`). Variable assignments inside `call` (batch-norm
    moving statistics) are collected instead of applied, returned out of the
    recomputed function and applied once, here: the recomputation in the
    backward pass assigns nothing, so the moving statistics move exactly as in
    the plain step.

    Args:
        layer: the layer whose variables `call` may assign.
        call: function of positional tensors only (TensorFlow's
            `recompute_grad` takes no keyword arguments) returning a tensor
            or a structure of tensors.
        *inputs: the tensors passed to `call`.

    Returns:
        The outputs of `call(*inputs)`.

    Example:
    >>> y = rematerialize(block, lambda x: block.forward(x, training=True), x)
    """
    variables = list(layer.variables)
    assigned = []  # the variables `call` assigns (the same on every run)

    def forward(*args):
        with DeferredUpdates() as scope:
            outputs = call(*args)
        assigned[:] = [v for v in variables if id(v) in scope.assigned]
        if len(assigned) != len(scope.assigned):
            raise ValueError(
                f"{layer.name}: the rematerialized call assigns variables that "
                "are not the layer's own; pass the layer that owns them."
            )
        return outputs, [scope.assigned[id(v)] for v in assigned]

    outputs, values = keras.remat(forward)(*inputs)
    for variable, value in zip(assigned, values, strict=True):
        variable.assign(value)
    return outputs
