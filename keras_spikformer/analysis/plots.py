"""Figures of spiking activity: firing rates, spike rasters, attention maps.

Drawn with matplotlib's Agg canvas directly (no `pyplot`, no global backend
change) and saved as PNG. Each function returns the path it wrote. Install
matplotlib to use them (`pip install matplotlib`).
"""

import difflib
from pathlib import Path

import keras
import numpy as np

from keras_spikformer.analysis.firing_rates import is_spikformer, neuron_layer_names
from keras_spikformer.neurons.recording import record_spikes


def _figure(figsize, dpi, layout=None):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "keras_spikformer.analysis.plots needs matplotlib: "
            "`pip install matplotlib`."
        ) from error
    figure = Figure(figsize=figsize, dpi=dpi, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path, dpi):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png")
    return str(path)


def _one_sample(model, image):
    """`image` as a batch of one for `model` (adds the batch axis if missing)."""
    image = np.asarray(image)
    inputs = getattr(model, "inputs", None)
    rank = len(inputs[0].shape) if inputs else image.ndim + 1
    if image.ndim == rank - 1:
        return image[None]
    if image.ndim == rank and image.shape[0] == 1:
        return image
    raise ValueError(
        f"Expected one sample (shape {tuple(inputs[0].shape[1:]) if inputs else '?'}"
        f" or a batch of one); got shape {image.shape}. Pass `images[i]`."
    )


def _record(model, image):
    with record_spikes() as record:
        model(_one_sample(model, image), training=False)
    return record


def plot_firing_rates(rates, path, title="Firing rates", figsize=(8, 6), dpi=100):
    """Horizontal bar chart of firing rates per layer.

    Args:
        rates: dict of layer name -> rate (e.g. from `firing_rates`).
        path: str or path of the PNG to write.
        title: str. Defaults to `"Firing rates"`.
        figsize: `(width, height)` in inches. Defaults to `(8, 6)`.
        dpi: int, pixels per inch: the PNG is `width*dpi x height*dpi`.

    Returns:
        str, the path written.

    Example:
    >>> plot_firing_rates(firing_rates(model, images), "rates.png")
    """
    if not rates:
        raise ValueError("`rates` is empty: nothing to plot.")
    names = list(rates)
    values = np.array([float(rates[name]) for name in names])
    figure = _figure(figsize, dpi)
    ax = figure.add_subplot()
    positions = np.arange(len(names))
    ax.barh(positions, values, color="tab:blue")
    ax.set_yticks(positions, names, fontsize=max(4, min(9, 300 // len(names))))
    ax.invert_yaxis()
    ax.set_xlabel("mean firing rate (spikes per neuron per time step)")
    ax.set_xlim(0, max(1e-3, float(np.nanmax(values))) * 1.15)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _save(figure, path, dpi)


def plot_spike_raster(
    model, image, layer_name, path, neurons=64, figsize=(8, 5), dpi=100
):
    """Spike raster (neuron index vs time step) of one layer for one image.

    Args:
        model: a model containing `LIFNeuron` layers.
        image: one input sample (or a batch of one).
        layer_name: str, a name from `firing_rates(model, ...)`, e.g.
            `"block.0.attn.q_lif"`.
        path: str or path of the PNG to write.
        neurons: int, the number of neurons shown, evenly spaced over the
            layer's flattened neurons; or a sequence of flat neuron indices.
            Defaults to `64`.
        figsize: `(width, height)` in inches. Defaults to `(8, 5)`.
        dpi: int. Defaults to `100`.

    Returns:
        str, the path written.

    Example:
    >>> plot_spike_raster(model, images[0], "patch_embed.rpe_lif", "raster.png")
    """
    layers = neuron_layer_names(model)
    if layer_name not in layers:
        close = difflib.get_close_matches(layer_name, list(layers), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"No spiking layer named {layer_name!r}.{hint} "
            f"Spiking layers: {', '.join(layers)}."
        )
    spikes = keras.ops.convert_to_numpy(_record(model, image).last(layers[layer_name]))
    num_timesteps = spikes.shape[1]
    flat = spikes[0].reshape(num_timesteps, -1)  # [T, neurons]
    total = flat.shape[1]
    if isinstance(neurons, (int, np.integer)):
        if neurons < 1:
            raise ValueError(f"`neurons` must be >= 1; got {neurons}.")
        index = np.unique(np.linspace(0, total - 1, min(int(neurons), total)).round())
        index = index.astype(int)
    else:
        index = np.asarray(list(neurons), dtype=int)
        if index.size == 0 or index.min() < 0 or index.max() >= total:
            raise ValueError(
                f"`neurons` must be flat indices in [0, {total}); got {neurons}."
            )
    chosen = flat[:, index].T  # [neurons, T]
    figure = _figure(figsize, dpi)
    ax = figure.add_subplot()
    ax.imshow(
        chosen,
        aspect="auto",
        cmap="Greys",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(-0.5, num_timesteps - 0.5, len(index) - 0.5, -0.5),
    )
    ax.set_xticks(range(num_timesteps))
    ax.set_xlabel("time step")
    ax.set_ylabel(f"neuron ({len(index)} of {total}, evenly spaced)")
    ax.set_title(
        f"{layer_name}: spikes of one image (layer rate {float(np.mean(flat)):.3f})"
    )
    figure.tight_layout()
    return _save(figure, path, dpi)


def plot_attention_maps(model, image, path, block=0, head=0, figsize=None, dpi=100):
    """The spiking attention map `q k^T` of one head for one image.

    Draws the tokens x tokens map of coincidence counts (`q k^T` before the
    scale, no softmax) at every time step and its mean over time. Tokens are
    row-major patches (`n = h * W + w`).

    Args:
        model: a `Spikformer` or `SpikformerBackbone`.
        image: one input sample (or a batch of one).
        path: str or path of the PNG to write.
        block: int, the Spikformer block. Defaults to `0`.
        head: int, the attention head. Defaults to `0`.
        figsize: `(width, height)` in inches. Defaults to `(3 * (T + 1) + 1, 3.4)`.
        dpi: int. Defaults to `100`.

    Returns:
        str, the path written.

    Example:
    >>> plot_attention_maps(model, images[0], "attention.png", block=3, head=2)
    """
    if not is_spikformer(model):
        raise TypeError(
            "plot_attention_maps needs a Spikformer or SpikformerBackbone; got "
            f"{type(model).__name__}."
        )
    backbone = getattr(model, "backbone", model)
    if not 0 <= int(block) < backbone.num_layers:
        raise ValueError(f"`block` must be in [0, {backbone.num_layers}); got {block}.")
    attn = backbone.get_layer(f"block_{int(block)}").attn
    if not 0 <= int(head) < attn.num_heads:
        raise ValueError(f"`head` must be in [0, {attn.num_heads}); got {head}.")
    record = _record(model, image)
    d = attn.head_dim
    channels = slice(int(head) * d, (int(head) + 1) * d)
    q = keras.ops.convert_to_numpy(record.last(attn.q.lif))[0, ..., channels]
    k = keras.ops.convert_to_numpy(record.last(attn.k.lif))[0, ..., channels]
    maps = np.einsum("tnc,tmc->tnm", q.astype(np.float32), k.astype(np.float32))
    panels = list(maps) + [maps.mean(axis=0)]
    titles = [f"t = {t}" for t in range(len(maps))] + ["mean over T"]
    figsize = figsize or (3.0 * len(panels) + 1.0, 3.4)
    figure = _figure(figsize, dpi, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    vmax = max(1.0, float(maps.max()))
    for ax, panel, title in zip(axes, panels, titles, strict=True):
        image_ = ax.imshow(panel, cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key token", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("query token", fontsize=8)
    figure.colorbar(image_, ax=list(axes), shrink=0.9, label="q k^T (count)")
    figure.suptitle(f"block {int(block)}, head {int(head)}: spiking attention q k^T")
    return _save(figure, path, dpi)
