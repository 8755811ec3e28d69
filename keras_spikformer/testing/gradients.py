"""Backend-agnostic gradients for tests of custom-gradient code."""

import keras
import numpy as np


def vector_jacobian(fn, inputs, upstream=1.0, layer=None):
    """Gradient of `sum(fn(inputs) * upstream)` on the active backend.

    Args:
        fn: callable on one tensor. When `layer` is given, `fn(x)` must call
            `layer` (its trainable variables are differentiated too).
        inputs: numpy array.
        upstream: array broadcastable to `fn(inputs)`: the output gradient.
        layer: optional Keras layer whose trainable variables get gradients.

    Returns:
        `(input_gradient, variable_gradients)` as numpy arrays; the second is a
        list in `layer.trainable_variables` order (empty without `layer`).

    Example:
    >>> dx, _ = vector_jacobian(LIFNeuron(), np.ones((2, 4, 3), "float32"))
    """
    variables = list(layer.trainable_variables) if layer is not None else []
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(fn(x) * upstream)
        grads = tape.gradient(total, [x] + variables)
        return np.asarray(grads[0]), [np.asarray(g) for g in grads[1:]]
    if backend == "jax":
        import jax

        def total(values, x):
            # Variables read their traced values; assignments (batch-norm
            # moving statistics) stay inside the scope.
            with keras.StatelessScope(
                state_mapping=list(zip(variables, values, strict=True))
            ):
                return (fn(x) * upstream).sum()

        grad_vars, grad_x = jax.grad(total, argnums=(0, 1))(
            [v.value for v in variables], inputs
        )
        return np.asarray(grad_x), [np.asarray(g) for g in grad_vars]
    import torch

    x = torch.tensor(inputs, requires_grad=True)
    (fn(x) * torch.as_tensor(upstream)).sum().backward()
    # Variables that take no part in `fn` have no gradient (None), as on TF.
    grads = [None if v.value.grad is None else v.value.grad.numpy() for v in variables]
    return x.grad.numpy(), grads
