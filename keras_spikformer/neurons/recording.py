"""Capture the spikes that neuron layers emit during an eager forward pass."""

import contextlib

_RECORDERS = []


class SpikeRecord(dict):
    """Maps each neuron layer that ran to the list of spike tensors it emitted."""

    def last(self, layer):
        """Returns the most recent spike tensor of `layer`."""
        return self[layer][-1]


@contextlib.contextmanager
def record_spikes():
    """Records the output of every neuron layer called inside the block.

    Works for eager calls (`model(x)`, `layer(x)`); compiled functions
    (`predict`, `fit`) trace symbolic tensors, which are not recorded.

    Returns:
        A `SpikeRecord`: `{layer: [spikes, ...]}` in call order.

    Example:
    >>> with record_spikes() as spikes:
    ...     model(images, training=False)
    >>> rates = {layer.name: float(keras.ops.mean(s[-1])) for layer, s in spikes.items()}
    """
    record = SpikeRecord()
    _RECORDERS.append(record)
    try:
        yield record
    finally:
        _RECORDERS.remove(record)


def notify(layer, spikes):
    """Hands `spikes` to every active recorder (called by neuron layers)."""
    if not _RECORDERS or type(spikes).__name__ == "KerasTensor":
        return
    for record in _RECORDERS:
        record.setdefault(layer, []).append(spikes)
