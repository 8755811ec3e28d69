"""Where the time of one compiled JAX training step goes, per XLA:CPU thunk.

Traces `--steps` training steps of a zoo preset (any family) with `jax.profiler`,
reads the XLA thunk events from the trace and joins them with the optimised
HLO (dumped to `--dump-dir`), then prints the time per step grouped by layer
(the `op_name` of each fusion: `fwd` / `bwd`, e.g. `block_*/mlp/fc1`) and
kind (`matmul`: dots, convolutions and YNNPACK fusions; `elementwise/copy`:
everything else), and the most expensive thunks with their HLO shapes.

Thunk times are wall-clock spans on XLA's worker threads: matrix products
that XLA runs asynchronously are counted where they wait, so read the
groups as a map of where time goes, not as exact costs; time changes with
A/B runs of the whole step (CPU time per step), as in `benchmarks/README.md`.

Usage:
    python benchmarks/profile_step.py --preset spikformer_4_384_cifar10 \\
        --batch-size 32 [--steps 2] [--top 30] [--dump-dir /tmp/xla_dump]

The XLA dump flag must be set before JAX starts, so the script sets
`XLA_FLAGS` and `KERAS_BACKEND=jax` itself; run it as its own process.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="spikformer_4_384_cifar10")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="traced steps")
    parser.add_argument("--top", type=int, default=30, help="thunks listed")
    parser.add_argument("--dump-dir", help="XLA HLO dump (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    return args


def thunk_times(trace_dir, steps):
    """Milliseconds per step of each XLA thunk (by HLO instruction name)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"No *.xplane.pb trace under {trace_dir}.")
    space = xplane_pb2.XSpace()
    with open(paths[0], "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if "XLA" not in line.name:  # XLA's worker and client threads
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if not name.startswith(("ThunkExecutor", "end: ", "Slinky")):
                    times[name] += event.duration_ps / 1e9 / steps
    return times


def hlo_instructions(dump_dir):
    """`{name: (shape, op_name)}` of the train step's optimised HLO entry."""
    paths = glob.glob(os.path.join(dump_dir, "*train_step*cpu_after_optimizations.txt"))
    if not paths:
        raise FileNotFoundError(f"No optimised train-step HLO in {dump_dir}.")
    with open(max(paths, key=os.path.getsize)) as f:
        text = f.read()
    entry = text[text.index("\nENTRY") :]
    instructions = {}
    for line in entry.splitlines():
        match = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+) ", line)
        if match:
            op_name = re.search(r'op_name="([^"]*)"', line)
            instructions[match.group(1)] = (
                match.group(2),
                op_name.group(1) if op_name else "",
            )
    return instructions


def group_of(op_name):
    """`(direction, layer)` of an HLO `op_name`, blocks merged as `block_*`."""
    if "transpose(jvp" in op_name:
        direction = "bwd"
    elif "jvp(" in op_name:
        direction = "fwd"
    else:
        direction = "other"
    parts = re.split(r"_backbone\)+/", op_name)
    if len(parts) < 2:
        return direction, "(outside the backbone)"
    path = [p for p in parts[1].split("/") if not p.startswith("jit(")][:3]
    return direction, re.sub(r"block_\d+", "block_*", "/".join(path))


def kind_of(name):
    base = re.sub(r"\.\d+$", "", name)
    return "matmul" if base.startswith(("ynn", "dot", "conv")) else "elementwise/copy"


def report(times, instructions, top):
    total = sum(times.values())
    print(f"thunk time per step: {total / 1e3:.2f} s")
    groups = collections.Counter()
    for name, ms in times.items():
        _, op_name = instructions.get(name, ("", ""))
        groups[group_of(op_name) + (kind_of(name),)] += ms
    print(f"\n{'ms/step':>9} {'share':>6}  dir   kind              layer")
    for (direction, layer, kind), ms in groups.most_common():
        if ms >= total * 0.005:
            print(f"{ms:9.1f} {ms / total:6.1%}  {direction:5s} {kind:17s} {layer}")
    print(f"\n{'ms/step':>9}  thunk (HLO shape) layer")
    for name, ms in times.most_common(top):
        shape, op_name = instructions.get(name, ("?", ""))
        direction, layer = group_of(op_name)
        print(f"{ms:9.1f}  {name} ({shape}) {direction} {layer}")


def main(argv=None):
    args = parse_args(argv)
    dump_dir = args.dump_dir or tempfile.mkdtemp(prefix="xla_dump_")
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={dump_dir}"
    ).strip()
    import jax

    from keras_spikformer import ImageClassifier

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from throughput import compile_for_training, random_batch

    model = ImageClassifier.from_preset(args.preset, load_weights=False)
    x, y = random_batch(model, args.batch_size)
    compile_for_training(model, jit_compile=True)
    for _ in range(2):  # compile, then one warm step
        model.train_on_batch(x, y)
    started, cpu = time.perf_counter(), time.process_time()
    trace_dir = tempfile.mkdtemp(prefix="jax_trace_")
    with jax.profiler.trace(trace_dir):
        for _ in range(args.steps):
            model.train_on_batch(x, y)
    wall = (time.perf_counter() - started) / args.steps
    cpu = (time.process_time() - cpu) / args.steps
    print(
        f"{args.preset} batch {args.batch_size}: {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU per traced step (load {os.getloadavg()[0]:.1f}); "
        f"XLA_FLAGS={os.environ['XLA_FLAGS']}"
    )
    report(thunk_times(trace_dir, args.steps), hlo_instructions(dump_dir), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
