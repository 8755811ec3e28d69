"""What one training step's parts cost on JAX: spiking units and stem convolutions.

Times the forward and backward (`jax.grad`) of the pieces a Spikformer
training step is made of, at the shapes of `spikformer_4_384_cifar10`, batch
32, T=4 (so 128 images of the folded batch):

- a `SpikingDense` unit (linear -> BatchNorm -> LIF) on `[32, 4, 64, 384]`
  spikes, as it is and with its LIF and then also its BatchNorm replaced by
  the identity: the three rows split the unit's time into matrix products,
  batch norm and neuron;
- each 3x3 convolution of the patch-splitting stem, forward, forward +
  both gradients, filter gradient only, with the GFLOP/s reached.

Median of `--repeats` timed calls after one compiling call; run it as its
own process on a quiet machine. The figures are a map for speed work (see
`benchmarks/README.md`), not a test.

Usage:
    python benchmarks/unit_costs.py [--repeats 5] [--units 1536 384]

The script sets `KERAS_BACKEND=jax` itself; run it as its own process.
"""

import argparse
import os
import statistics
import sys
import time

# (name, input channels, output channels, side) of the stem's 3x3 convolutions.
STEM_CONVS = (
    ("stage_1 48->96 at 32x32", 48, 96, 32),
    ("stage_2 96->192 at 32x32", 96, 192, 32),
    ("stage_3 192->384 at 16x16", 192, 384, 16),
    ("rpe 384->384 at 8x8", 384, 384, 8),
)
FOLDED_BATCH = 128  # batch 32 x T 4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--units", type=int, nargs="+", default=[1536, 384])
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def median_ms(fn, *args, repeats):
    import jax

    jax.block_until_ready(fn(*args))  # compiles
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def unit_ms(units, variant, repeats):
    """fwd + bwd of one `SpikingDense(units)`; `variant` in full/no_lif/linear."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from keras import ops

    from keras_spikformer.layers import SpikingDense

    rng = np.random.default_rng(0)
    x = (rng.random((32, 4, 64, 384)) > 0.8).astype("float32")
    upstream = rng.normal(size=(32, 4, 64, units)).astype("float32")
    layer = SpikingDense(units, use_bias=True)
    layer.build(x.shape)
    if variant in ("no_lif", "linear"):
        layer.lif.call = lambda inputs: inputs
    if variant == "linear":
        layer.bn.call = lambda inputs, training=None, mask=None: ops.cast(
            inputs, "float32"
        )
    trainable = [v.value for v in layer.trainable_variables]
    other = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x):
        # Not linear in `y`, so that the forward product is computed in every
        # variant (a linear loss lets XLA drop it from the linear-only one).
        y, _ = layer.stateless_call(trainable, other, x, training=True)
        return jnp.sum(jnp.square(y) * upstream)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return median_ms(step, trainable, x, repeats=repeats)


def conv_rows(repeats):
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    rows = []
    for name, c_in, c_out, side in STEM_CONVS:
        x = (jax.random.uniform(key, (FOLDED_BATCH, side, side, c_in)) > 0.8).astype(
            jnp.float32
        )
        w = jax.random.normal(key, (3, 3, c_in, c_out)) * 0.05

        def loss(x, w):
            y = jax.lax.conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            return jnp.sum(y * y)

        flop = 2.0 * FOLDED_BATCH * side * side * c_in * c_out * 9
        for mode, fn, passes in (
            ("forward", jax.jit(loss), 1),
            ("forward + both gradients", jax.jit(jax.grad(loss, (0, 1))), 3),
            ("filter gradient", jax.jit(jax.grad(loss, 1)), 2),
        ):
            ms = median_ms(fn, x, w, repeats=repeats)
            rows.append((name, mode, ms, flop * passes / ms / 1e6))
    return rows


def main(argv=None):
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = "jax"  # before Keras loads; own process
    import keras_spikformer  # noqa: F401  (the package's XLA:CPU settings)

    print(f"load average {os.getloadavg()[0]:.1f}; median of {args.repeats} calls")
    print("\n| SpikingDense units | linear only (ms) | + BatchNorm | + LIF (the unit) |")
    print("|---|---|---|---|")
    for units in args.units:
        times = [unit_ms(units, v, args.repeats) for v in ("linear", "no_lif", "full")]
        print(f"| {units} | " + " | ".join(f"{t:.0f}" for t in times) + " |")
    print("\n| stem convolution (batch 128) | pass | ms | GFLOP/s |")
    print("|---|---|---|---|")
    for name, mode, ms, rate in conv_rows(args.repeats):
        print(f"| {name} | {mode} | {ms:.0f} | {rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
