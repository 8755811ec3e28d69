"""Membrane potentials carried from one call to the next (streaming)."""

_SCOPES = []


class CarriedMembranes:
    """A scope in which every neuron starts from the membrane it ended with.

    Outside such a scope a neuron starts each call at rest (`v_reset`), so no
    state leaks between batches. Inside, the `k`-th neuron call of the
    forward pass starts from `initial[key_k]` and leaves its final membrane in
    `final[key_k]`, where `key_k` is `"{k:03d}/{layer name}"`: the structure of
    a streaming state (`keras_spikformer.streaming`). A key missing from
    `initial` starts at rest. Works eagerly and under tracing
    (`tf.function`, `jax.jit`, export), since it only routes tensors.

    Args:
        initial: dict `{key: membrane tensor [batch, ...]}`, or `None` (all at rest).

    Example:
    >>> with CarriedMembranes(state) as scope:
    ...     spikes = model(x_t)
    >>> state = scope.final
    """

    def __init__(self, initial=None):
        self.initial = dict(initial or {})
        self.final = {}
        self.layers = {}

    def __enter__(self):
        _SCOPES.append(self)
        return self

    def __exit__(self, *exc):
        _SCOPES.remove(self)
        unused = sorted(set(self.initial) - set(self.final))
        if unused and exc[0] is None:
            raise ValueError(
                f"The streaming state has membranes no neuron used: {unused[:3]}. "
                "It belongs to another model (or one with other options): start "
                "from this model's initial state (`stream.reset_state()`)."
            )

    def carry(self, layer, inputs, integrate):
        """Runs `integrate(inputs, v0) -> (spikes, v)` from this neuron's membrane.

        Args:
            layer: the neuron layer (its name goes into the key).
            inputs: `[batch, time, ...]` float32 inputs.
            integrate: the neuron's forward time loop from membrane `v0`
                (`None`: at rest).

        Returns:
            The spikes.
        """
        key = f"{len(self.final):03d}/{layer.name}"
        spikes, v = integrate(inputs, self.initial.get(key))
        self.final[key] = v
        self.layers[key] = layer
        return spikes


def active():
    """The innermost `CarriedMembranes` scope, or `None`."""
    return _SCOPES[-1] if _SCOPES else None
