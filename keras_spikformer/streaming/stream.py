"""`Stream`: a classifier run one time step per call, its state carried over."""

import keras
from keras import ops

from keras_spikformer.streaming.step_network import StepNetwork


class Stream:
    """A classifier that consumes one time step per call (a stateful model).

    As Keras's stateful recurrent layers do, the stream is built for a fixed
    batch size and holds its state (every neuron's membrane potential, the
    running sums behind the mean logits, the step count) in non-trainable
    variables; each `step` consumes one time step and `reset_state` starts a
    new sequence. Batch norms use their moving statistics (inference).

    Feeding the T frames (or T times the image, for models that repeat a
    static image) one `step` at a time gives the same spikes and, at step T,
    the same logits as the multi-step model (exact on the reference fixtures;
    on other weights the time mean is summed in another order, so logits may
    differ in float rounding).

    Args:
        model: a classifier of this package (`model.stream(...)` builds this).
        batch_size: int >= 1, the batch size of every step.
        jit_compile: `"auto"` or `True` (compile the step: `jax.jit` on JAX,
            a `tf.function` graph on TensorFlow, ~5x faster than eager there;
            torch runs it eagerly) or `False` (eager everywhere, e.g. to
            record spikes with `record_spikes`).

    Example:
    >>> stream = model.stream(batch_size=1)
    >>> for frame in frames:  # each [1, H, W, C]
    ...     out = stream.step(frame)
    >>> out["mean_logits"]  # what model(all frames) returns
    >>> stream.reset_state()
    """

    def __init__(self, model, batch_size, jit_compile="auto"):
        if jit_compile not in ("auto", True, False):
            raise ValueError(
                f"`jit_compile` must be 'auto', True or False; got {jit_compile!r}."
            )
        self.network = StepNetwork(model, batch_size)
        self.batch_size = self.network.batch_size
        network = self.network
        self.state_variables = [
            keras.Variable(value, trainable=False, name=name, dtype="float32")
            for name, value in zip(
                network.state_names(),
                network.flatten_state(network.initial_state()),
                strict=True,
            )
        ]
        backend = keras.backend.backend()
        compile_here = jit_compile is True or (
            jit_compile == "auto" and backend != "torch"
        )
        self._step = self._compiled_step(backend) if compile_here else self._eager_step

    @property
    def frame_shape(self):
        """What `step` takes per sample: `(H, W, C)`."""
        return self.network.frame_shape

    @property
    def state(self):
        """The current state, the structure `step_function` takes and returns."""
        return self.network.unflatten_state([v.value for v in self.state_variables])

    def reset_state(self):
        """Starts a new sequence: membranes at rest, running sums and steps at 0."""
        for variable, value in zip(
            self.state_variables,
            self.network.flatten_state(self.network.initial_state()),
            strict=True,
        ):
            variable.assign(value)

    def step(self, x_t):
        """Consumes one time step.

        Args:
            x_t: `[batch_size, H, W, C]` model-ready image or event frame (what
                `model.preprocess` gives, one time step of it).

        Returns:
            dict: `"logits"` (this step's), `"mean_logits"` (the multi-step
            model's output if the sequence ended now), `"steps"` (steps since
            the last reset).
        """
        x_t = self._check(x_t)
        state, outputs = self._step(self.state, x_t)
        leaves = self.network.flatten_state(state)
        for variable, value in zip(self.state_variables, leaves, strict=True):
            variable.assign(value)
        return outputs

    def step_function(self):
        """The pure step `fn(state, x_t) -> (state, outputs)` (no variable is
        assigned), for `jax.lax.scan`, `tf.function` and export. Start from
        `stream.network.initial_state()`.

        Example:
        >>> fn = stream.step_function()
        >>> state = stream.network.initial_state()
        >>> state, out = fn(state, frame)
        """
        return self.network.step

    def export(self, filepath, format="tf_saved_model", overwrite=False):
        """Writes this stream's pure step as a SavedModel or ONNX file, state
        in and out as named tensors; see `streaming.export_step`.

        Example:
        >>> stream.export("step.onnx", format="onnx")
        """
        from keras_spikformer.streaming.step_export import export_step

        return export_step(self, filepath, format=format, overwrite=overwrite)

    def _eager_step(self, state, x_t):
        return self.network.step(state, x_t)

    def _compiled_step(self, backend):
        network = self.network
        if backend == "jax":
            import jax

            net = network.network

            @jax.jit
            def run(variables, state, x_t):
                return network.step(state, x_t, variables=variables)

            def step(state, x_t):
                variables = (
                    [v.value for v in net.trainable_variables],
                    [v.value for v in net.non_trainable_variables],
                )
                return run(variables, state, x_t)

            return step
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.function(network.step, reduce_retracing=True)
        return self._eager_step

    def _check(self, x_t):
        shape = tuple(getattr(x_t, "shape", ()))
        expected = (self.batch_size,) + tuple(self.frame_shape)
        if shape != expected:
            hint = ""
            if len(shape) == len(expected) + 1:
                hint = " (one time step per call: pass frames[:, t], not all frames)"
            raise ValueError(
                f"Stream.step takes one time step of shape {expected} (batch_size, "
                f"H, W, C); got {shape}{hint}. Build a stream for another batch "
                "size with model.stream(batch_size=...)."
            )
        return ops.cast(ops.convert_to_tensor(x_t), "float32")
