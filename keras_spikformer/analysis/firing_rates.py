"""Mean firing rates of every spiking neuron layer, measured on a real batch.

Method: one eager forward pass with `training=False` (batch norm uses its
moving statistics and nothing is updated) inside `record_spikes()`, which
hands over each `LIFNeuron`'s output. The rate of a layer is the mean of its
spikes over batch, time steps and neurons (the fraction of neuron-steps that
fired). The model and its outputs are untouched.
"""

import keras
import numpy as np

from keras_spikformer.convert.families import family_of_model
from keras_spikformer.models.spikformer import Spikformer, SpikformerBackbone
from keras_spikformer.neurons import LIFNeuron
from keras_spikformer.neurons.recording import record_spikes


def is_spikformer(model):
    """Whether `model` is a `Spikformer` or a `SpikformerBackbone`."""
    return isinstance(model, (Spikformer, SpikformerBackbone))


def _reference_neurons(model):
    """`{reference module name: LIFNeuron}` for models of a converted family, else `None`."""
    try:
        family = family_of_model(model)
    except ValueError:
        return None
    return {
        name: layer
        for name, layer in family.reference_module_map(model).items()
        if isinstance(layer, LIFNeuron)
    }


def neuron_layer_names(model):
    """Names every `LIFNeuron` of `model` by its place in the model.

    Models of the zoo's families (Spikformer, Spike-driven Transformer,
    QKFormer, Meta-SpikeFormer) use the reference module names
    (`patch_embed.proj_lif`, `block.0.attn.attn_lif`, ...); other models use
    layer paths (`block/attn/q/lif`), falling back to layer names.

    Args:
        model: a Keras model or layer.

    Returns:
        dict of name -> `LIFNeuron` layer, in model order.

    Raises:
        ValueError: if the model holds no `LIFNeuron`.

    Example:
    >>> neuron_layer_names(model)["block.0.attn.q_lif"]
    """
    names = _reference_neurons(model)
    if names is None:
        layers = [model] if isinstance(model, LIFNeuron) else []
        if isinstance(model, keras.layers.Layer):
            layers += [
                layer
                for layer in model._flatten_layers(include_self=False, recursive=True)
                if isinstance(layer, LIFNeuron)
            ]
        names = {}
        for layer in layers:
            name = layer.path or layer.name
            base, i = name, 1
            while name in names:
                i += 1
                name = f"{base}_{i}"
            names[name] = layer
    if not names:
        raise ValueError(
            f"{getattr(model, 'name', type(model).__name__)} has no spiking neuron "
            "layers (`LIFNeuron`), so it has no firing rates. Pass a Spikformer or "
            "a model built from keras_spikformer layers."
        )
    return names


def as_batch(images):
    """`images` as a NumPy batch; raises a clear error for empty batches."""
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(image) for image in images]) if images else []
    array = np.asarray(images)
    if array.ndim == 0 or array.shape[0] == 0 or array.size == 0:
        raise ValueError(
            f"Got an empty batch (shape {array.shape}); firing rates and synaptic "
            "operations are measured on real inputs. Pass at least one image, e.g. "
            "`images[:16]`."
        )
    return array


def split_batches(images, batch_size=None):
    """Yields consecutive slices of `images` of at most `batch_size` samples."""
    if batch_size is None:
        yield images
        return
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size}.")
    for start in range(0, images.shape[0], int(batch_size)):
        yield images[start : start + int(batch_size)]


def spike_sums(record, layers):
    """`{name: (sum of spikes, number of neuron-steps)}` from a `SpikeRecord`.

    Names come in call order (the order the neurons ran), then any that did
    not run.
    """
    called = {id(layer): i for i, layer in enumerate(record)}
    order = sorted(layers, key=lambda n: called.get(id(layers[n]), len(called)))
    out = {}
    for name in order:
        layer = layers[name]
        total, count = 0.0, 0
        for spikes in record.get(layer, []):
            array = keras.ops.convert_to_numpy(spikes)
            total += float(np.sum(array, dtype=np.float64))
            count += array.size
        out[name] = (total, count)
    return out


def accumulate_spikes(totals, record, layers):
    """Adds one batch's `(spike total, count)` per layer into `totals`."""
    for name, (total, count) in spike_sums(record, layers).items():
        running = totals.setdefault(name, [0.0, 0])
        running[0] += total
        running[1] += count


def firing_rates(model, images, batch_size=None):
    """Mean firing rate of every spiking neuron layer of `model` on `images`.

    The rate of a layer is the fraction of its neuron-time-steps that spiked:
    the mean of its output over batch, time and neurons, measured in one eager
    forward pass with `training=False`. The model is not changed.

    Args:
        model: a `Spikformer`, `SpikformerBackbone` or any Keras model that
            contains `LIFNeuron` layers.
        images: array-like batch the model takes (e.g. `[batch, 32, 32, 3]`).
        batch_size: int or `None`, run the batch in slices of this size to
            bound memory. `None` runs it at once. Rates do not depend on it.

    Returns:
        dict of layer name -> float rate in [0, 1], in call order (reference
        names such as `patch_embed.proj_lif`, `block.0.attn.attn_lif` for
        Spikformer models; layer paths otherwise).

    Raises:
        ValueError: for a model without spiking layers, an empty batch, or an
            input shape the model rejects.

    Example:
    >>> rates = firing_rates(model, images[:32])
    >>> rates["block.0.attn.attn_lif"]
    """
    layers = neuron_layer_names(model)
    images = as_batch(images)
    totals = {}
    for batch in split_batches(images, batch_size):
        with record_spikes() as record:
            model(batch, training=False)
        accumulate_spikes(totals, record, layers)
    silent = [name for name, (_, count) in totals.items() if count == 0]
    if len(silent) == len(totals):
        raise ValueError(
            "No spikes were recorded: the forward pass did not run the neuron "
            "layers eagerly. Call firing_rates outside `tf.function`/`jax.jit`."
        )
    return {
        name: (total / count if count else float("nan"))
        for name, (total, count) in totals.items()
    }
