"""Seconds per 7x7 depthwise layer on JAX: `layers.DepthwiseConv2D` against Keras's.

The depthwise layers of Meta-SpikeFormer's `meta_spikeformer_15m_imagenet` at
batch 8, T = 4 (32 images): forward, and forward + both gradients, each
jit-compiled, median of `--repeats` runs, after checking that the outputs and
gradients agree (to float rounding).

Usage:
    python benchmarks/depthwise_conv.py [--repeats 5]
"""

import argparse
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from machine_info import machine_info, vector_summary  # noqa: E402

from keras_spikformer.layers.depthwise_conv import DepthwiseConv2D  # noqa: E402

# (height = width, channels) of the SepConv depthwise layers: stages 1 and 2.
SHAPES = [(112, 64), (56, 128), (28, 256)]


def median_seconds(function, repeats):
    jax.block_until_ready(function())  # compile
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timings(layer, x, repeats):
    values = [v.value for v in layer.trainable_variables]

    def loss(values, x):
        y, _ = layer.stateless_call(values, [], x)
        return keras.ops.sum(y * keras.ops.cos(y))

    forward = jax.jit(lambda values, x: layer.stateless_call(values, [], x)[0])
    gradients = jax.jit(jax.grad(loss, argnums=(0, 1)))
    outputs = (forward(values, x), gradients(values, x))
    return outputs, (
        median_seconds(lambda: forward(values, x), repeats),
        median_seconds(lambda: gradients(values, x), repeats),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    info = machine_info()
    print(
        f"{info['cpu_model']} ({info['cpu_family']}, "
        f"{vector_summary(info['cpu_flags'])}), jax {jax.__version__}"
    )
    print("| input | Keras fwd s | ours fwd s | Keras fwd+grad s | ours fwd+grad s |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for size, channels in SHAPES:
        x = (rng.random((32, size, size, channels)) > 0.8).astype("float32")
        ours = DepthwiseConv2D(7, padding="same", use_bias=False)
        reference = keras.layers.DepthwiseConv2D(7, padding="same", use_bias=False)
        ours.build(x.shape)
        reference.build(x.shape)
        reference.set_weights(ours.get_weights())
        ours_out, ours_s = timings(ours, x, args.repeats)
        ref_out, ref_s = timings(reference, x, args.repeats)
        for a, b in zip(
            jax.tree.leaves(ours_out), jax.tree.leaves(ref_out), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))
        print(
            f"| 32x{size}x{size}x{channels} | {ref_s[0]:.3f} | {ours_s[0]:.3f} "
            f"| {ref_s[1]:.3f} | {ours_s[1]:.3f} |"
        )


if __name__ == "__main__":
    main()
