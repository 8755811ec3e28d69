"""Streaming vs the multi-step forward: peak memory and latency per time step.

`--mode stream` feeds T event frames one at a time through `model.stream()`
(membranes carried in the stream's state); `--mode multi` runs the model
built for T steps on all T frames at once (`predict_on_batch`, compiled).
One process per configuration (the peak RSS is the process's, building and
compiling included). Random frames and the preset's architecture without its
weights (weights change neither memory nor time). Keras imports TensorFlow,
when installed, whenever it serialises a layer (the stream builds its one-step
copy from the model's config): both modes import it first, so that the peak
memories compare the models, not the imports (~430 MB here).

Usage:
    python benchmarks/streaming.py --backend jax --mode stream --num-steps 64 \\
        [--preset spikformer_2_256_dvsgesture] [--batch-size 1] [--repeats 5] \\
        --json results/streaming/jax_stream_64.json
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import machine_info, write_record  # noqa: E402
from throughput import peak_rss_mb, source_commit  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="spikformer_2_256_dvsgesture")
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "torch"], required=True
    )
    parser.add_argument("--mode", choices=["stream", "multi"], required=True)
    parser.add_argument("--num-steps", type=int, required=True, help="T")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed sequences")
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)
    if min(args.num_steps, args.batch_size, args.repeats) < 1:
        parser.error("--num-steps, --batch-size and --repeats must be >= 1")
    return args


def run(args):
    os.environ["KERAS_BACKEND"] = args.backend
    import importlib.util

    import keras
    import numpy as np

    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow  # noqa: F401  (see the module docstring)

    from keras_spikformer import ImageClassifier

    model = ImageClassifier.from_preset(
        args.preset, load_weights=False, preprocessor=None, num_timesteps=args.num_steps
    )
    if len(model.inputs[0].shape) != 5:
        raise SystemExit(f"{args.preset} takes static images; pick an event preset.")
    shape = (args.batch_size, args.num_steps) + tuple(model.inputs[0].shape[2:])
    frames = (np.random.default_rng(0).random(shape) < 0.05).astype("float32")
    start = time.perf_counter()
    if args.mode == "stream":
        stream = model.stream(batch_size=args.batch_size)
        sequence = _streamed(stream, frames)
    else:
        sequence = _whole(model, frames)
    first = sequence()  # compiles
    compile_seconds = time.perf_counter() - start
    times = [sequence() for _ in range(args.repeats)]
    seconds = statistics.median(times)
    del first
    return {
        "benchmark": "streaming",
        "preset": args.preset,
        "backend": args.backend,
        "keras": keras.__version__,
        "mode": args.mode,
        "num_steps": args.num_steps,
        "batch_size": args.batch_size,
        "sequence_seconds": round(seconds, 4),
        "seconds_per_step": round(seconds / args.num_steps, 5),
        "repeats": args.repeats,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "setup_seconds": round(compile_seconds, 2),
        "commit": source_commit(),
    }


def _streamed(stream, frames):
    from keras import ops

    def sequence():
        stream.reset_state()
        start = time.perf_counter()
        for t in range(frames.shape[1]):
            out = stream.step(frames[:, t])
        ops.convert_to_numpy(out["mean_logits"])  # wait for the last step
        return time.perf_counter() - start

    return sequence


def _whole(model, frames):
    def sequence():
        start = time.perf_counter()
        model.predict_on_batch(frames)
        return time.perf_counter() - start

    return sequence


def main(argv=None):
    args = parse_args(argv)
    record = run(args)
    record.update(machine_info())
    keys = ["backend", "mode", "num_steps", "seconds_per_step", "peak_rss_mb"]
    print(" ".join(f"{k}={record[k]}" for k in keys))
    if args.json:
        write_record(record, args.json)
    return record


if __name__ == "__main__":
    main()
