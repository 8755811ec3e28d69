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


def loss_and_gradients(model, images, labels, loss_fn=None):
    """One train-mode forward of `model`, its loss and every gradient.

    The step the reference fixtures record: batch statistics, mean
    cross-entropy on the logits. On JAX the step is compiled (eager JAX
    dispatches op by op: minutes for a small model).

    Args:
        model: a Keras model returning logits.
        images: numpy batch in the model's input layout.
        labels: integer numpy labels.
        loss_fn: a Keras loss; default sparse cross-entropy on logits.

    Returns:
        `(loss, logits, variable_gradients, input_gradient)` as Python float
        and numpy arrays; `variable_gradients` follows
        `model.trainable_variables`, `None` where a variable takes no part
        (zeros on JAX).

    Example:
    >>> loss, logits, grads, dx = loss_and_gradients(model, x, y)
    """
    if loss_fn is None:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(images)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=True)
            loss = loss_fn(labels, logits)
        grads = tape.gradient(loss, variables + [x])
        return (
            float(loss),
            np.asarray(logits),
            [None if g is None else np.asarray(g) for g in grads[:-1]],
            np.asarray(grads[-1]),
        )
    if backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def compute(trainable, x):
            logits, _ = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(labels, logits), logits

        step = jax.jit(jax.value_and_grad(compute, argnums=(0, 1), has_aux=True))
        (loss, logits), (g_vars, g_x) = step([v.value for v in variables], images)
        return (
            float(loss),
            np.asarray(logits),
            [np.asarray(g) for g in g_vars],
            np.asarray(g_x),
        )
    import torch

    x = torch.tensor(images, requires_grad=True)
    logits = model(x, training=True)
    loss = loss_fn(torch.as_tensor(labels), logits)
    grads = torch.autograd.grad(
        loss, [v.value for v in variables] + [x], allow_unused=True
    )
    return (
        float(loss.detach()),
        logits.detach().cpu().numpy(),
        [None if g is None else g.detach().cpu().numpy() for g in grads[:-1]],
        grads[-1].detach().cpu().numpy(),
    )
