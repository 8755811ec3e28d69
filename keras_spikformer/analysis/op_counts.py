"""Counting operations: MACs of one layer, input capture, attention events, rows.

The family-independent part of the energy estimate (`energy.py` puts it
together; `energy_families.py` says, per family, which inputs are spikes and
which are real valued). All counts are per image; MACs are per time step.
"""

import contextlib

import keras
import numpy as np

E_MAC = 4.6e-12  # joules per 32-bit float multiply-accumulate (45 nm, Horowitz 2014)
E_AC = 0.9e-12  # joules per 32-bit float accumulate


@contextlib.contextmanager
def capture_inputs(layers):
    """Sums the inputs that `layers` receive in eager calls, then restores them.

    Each layer's `call` is wrapped (an instance attribute shadowing the method)
    for the duration of the block; the wrapper records the input's sum, size,
    shape and whether every value is a non-negative integer (`integer`) or
    0/1 (`binary`), then calls the original, so outputs are unchanged. The
    layers are restored on exit, also on error.

    Args:
        layers: dict of name -> Keras layer.

    Yields:
        dict of name -> `{"sum", "size", "shape", "integer", "binary", "order"}`
        (`shape`: full shape of the last input, batch axis included; `order`:
        position of the layer's first call, absent if it never ran).
    """
    stats = {
        name: {"sum": 0.0, "size": 0, "shape": None, "integer": True, "binary": True}
        for name in layers
    }
    patched = []
    calls = []

    def wrap(name, original):
        def call(inputs, *args, **kwargs):
            if type(inputs).__name__ != "KerasTensor":
                array = keras.ops.convert_to_numpy(inputs).astype(np.float64)
                entry = stats[name]
                entry["sum"] += float(np.sum(array))
                entry["size"] += array.size
                entry["shape"] = tuple(array.shape)
                integer = bool(np.all((array >= 0) & (array == np.round(array))))
                entry["integer"] &= integer
                entry["binary"] &= integer and bool(np.all(array <= 1))
                if "order" not in entry:
                    entry["order"] = len(calls)
                    calls.append(name)
            return original(*((inputs,) + args), **kwargs)

        return call

    try:
        for name, layer in layers.items():
            own = layer.__dict__.get("call")
            patched.append((layer, own))
            object.__setattr__(layer, "call", wrap(name, layer.call))
        yield stats
    finally:
        for layer, own in reversed(patched):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)


def step_shape(shape, num_images, num_timesteps):
    """The shape one image feeds a layer at one time step.

    Inputs come time-folded (`[B * T, ...]`) or with a time axis (`[B, T, ...]`).
    """
    if shape[0] == num_images * num_timesteps:
        return tuple(shape[1:])
    if shape[0] == num_images and len(shape) > 2 and shape[1] == num_timesteps:
        return tuple(shape[2:])
    return tuple(shape[1:])


def conv_macs(layer, input_shape):
    """MACs of `keras.layers.Conv2D` for one sample of shape `input_shape` (HWC)."""
    out = layer.compute_output_shape((1,) + tuple(input_shape))
    k = int(np.prod(layer.kernel_size))
    groups = getattr(layer, "groups", 1) or 1
    return int(np.prod(out[1:-1])) * k * (input_shape[-1] // groups) * out[-1]


def depthwise_macs(layer, input_shape):
    """MACs of `keras.layers.DepthwiseConv2D` for one sample (HWC)."""
    out = layer.compute_output_shape((1,) + tuple(input_shape))
    return int(np.prod(out[1:])) * int(np.prod(layer.kernel_size))


def dense_macs(layer, input_shape):
    """MACs of `keras.layers.Dense` for one sample of shape `input_shape`."""
    return (
        int(np.prod(input_shape[:-1], dtype=np.int64)) * input_shape[-1] * layer.units
    )


def layer_macs(layer, input_shape):
    """`(kind, MACs)` of a conv, depthwise conv or dense layer for one sample."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise conv", depthwise_macs(layer, input_shape)
    if isinstance(layer, keras.layers.Conv2D):
        return "conv", conv_macs(layer, input_shape)
    if isinstance(layer, keras.layers.Dense):
        return "linear", dense_macs(layer, input_shape)
    raise TypeError(f"No MAC count for {type(layer).__name__} layers.")


def product_events(q, k, v, num_heads, order="auto"):
    """Exact accumulate counts of the two attention products.

    Args:
        q, k, v: `[batch, time, tokens, D]` binary arrays.
        num_heads: int.
        order: `"auto"` ((q k^T) v when tokens < head size, else q (k^T v): the
            order `SpikingSelfAttention` computes) or `"kv_first"` (always
            q (k^T v), as the QKFormer and Meta-SpikeFormer references do).

    Returns:
        `(names, macs_per_step, events)`: the two products' names, their MACs
        per image and time step, and the number of MACs with both operands
        non-zero summed over batch and time.
    """
    b, t, n, dim = q.shape
    d = dim // num_heads

    def heads(x):  # [B, T, N, D] -> [B, T, heads, N, d]
        return x.astype(np.float64).reshape(b, t, n, num_heads, d).swapaxes(2, 3)

    q, k, v = heads(q), heads(k), heads(v)
    if order == "auto" and n < d:  # (q k^T) v
        scores = np.einsum("bthnc,bthmc->bthnm", q, k)
        first = np.einsum("bthc,bthc->", q.sum(3), k.sum(3))
        second = np.einsum("bthm,bthm->", (scores != 0).sum(3), v.sum(4))
        names = ("q@k^T", "(q@k^T)@v")
        macs = num_heads * n * n * d
    else:  # q (k^T v)
        kv = np.einsum("bthnc,bthne->bthce", k, v)
        first = np.einsum("bthn,bthn->", k.sum(4), v.sum(4))
        second = np.einsum("bthc,bthc->", q.sum(3), (kv != 0).sum(4))
        names = ("k^T@v", "q@(k^T@v)")
        macs = num_heads * d * d * n
    return names, (macs, macs), (float(first), float(second))


def make_row(name, kind, source, macs, timesteps, rate, e_mac, e_ac):
    """One counted operation: SOPs for spike inputs, MAC ops for real ones.

    Args:
        name: reference-style name.
        kind: `"conv"`, `"linear"`, `"attention product"`, ...
        source: what enters it (`"real"`, `"spikes"`, `"counts"`, `"events"`).
        macs: MACs per image and time step.
        timesteps: passes per image.
        rate: input rate (`None` for a real-valued input: MACs).
        e_mac, e_ac: joules per MAC and per accumulate.

    Returns:
        dict with the fields `EnergyReport.layers` documents.
    """
    if rate is None:
        sops, mac_ops = 0.0, float(macs * timesteps)
    else:
        sops, mac_ops = float(rate * timesteps * macs), 0.0
    return {
        "name": name,
        "kind": kind,
        "input": source,
        "macs": int(macs),
        "timesteps": int(timesteps),
        "input_rate": None if rate is None else float(rate),
        "sops": sops,
        "mac_ops": mac_ops,
        "energy_mj": (sops * e_ac + mac_ops * e_mac) * 1e3,
    }
