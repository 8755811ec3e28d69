"""Compiler memory against step memory of one JAX training step of a zoo preset.

Lowers and compiles the Keras JAX train step (`jax.jit(model.train_step)`) of
`--preset` at `--batch-size`, without running it, and prints the process's
peak RSS before and after compiling beside XLA's own buffer sizes for the step
(`memory_analysis()`: temporaries, arguments, outputs). A peak RSS far above
the step's buffers is the compiler's, not the training's (QKFormer's unrolled
batch-spanning neuron, `benchmarks/README.md`).

Usage:
    python benchmarks/step_memory.py --preset qkformer_4_384_cifar10 --batch-size 32 [--remat]
"""

import argparse
import os
import resource
import sys

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="qkformer_4_384_cifar10")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--remat", action="store_true")
    args = parser.parse_args(argv)

    import jax
    from throughput import compile_for_training, random_batch

    from keras_spikformer import ImageClassifier

    options = {"remat": True} if args.remat else {}
    model = ImageClassifier.from_preset(args.preset, load_weights=False, **options)
    x, y = random_batch(model, args.batch_size)
    compile_for_training(model, jit_compile=True)
    model.optimizer.build(model.trainable_variables)
    state = tuple(
        [v.value for v in variables]
        for variables in (
            model.trainable_variables,
            model.non_trainable_variables,
            model.optimizer.variables,
            model.metrics_variables,
        )
    )
    before = peak_rss_mb()
    compiled = jax.jit(model.train_step).lower(state, (x, y, None)).compile()
    after = peak_rss_mb()
    memory = compiled.memory_analysis()
    mb = 2**20
    print(
        f"{args.preset} batch {args.batch_size}{' remat' if args.remat else ''}: "
        f"peak RSS {before:.0f} MB before compiling, {after:.0f} MB after; step "
        f"buffers: temporaries {memory.temp_size_in_bytes / mb:.0f} MB, arguments "
        f"{memory.argument_size_in_bytes / mb:.0f} MB, outputs "
        f"{memory.output_size_in_bytes / mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
