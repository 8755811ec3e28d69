"""How close the throughput records come to this CPU's float32 matmul peak.

A Spikformer step is almost all convolution and matmul work: its forward pass
costs `2 * MACs * T` FLOPs per image (MACs of one time step, counted from the
architecture by `keras_spikformer.analysis`), a training step about three
times that (forward, input gradients, weight gradients). Dividing by the
measured images/s gives the GFLOP/s each record reached; this script puts that
beside the machine's dense float32 matmul rate (numpy/BLAS on all cores, best
of a few runs), and the ratio to the reference that a run at 100% of that
peak would reach. A target above that ratio needs fewer FLOPs (not faster
code) on this CPU.

Usage (on the machine that wrote the records):
    python benchmarks/roofline.py benchmarks/results/cpu_table/*.json \
        --preset spikformer_4_384_cifar10 --json benchmarks/results/roofline.json
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import machine_info, write_record  # noqa: E402

# FLOPs of one training step over one forward pass (forward + two gradients).
TRAIN_FLOP_FACTOR = 3.0


def matmul_peak_gflops(size=2048, repeats=5):
    """Best float32 matmul rate of `size`-square matrices, in GFLOP/s.

    Args:
        size: matrix side.
        repeats: timed batches of 5 products; the best counts.

    Returns:
        float, GFLOP/s.
    """
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * size**3 / best / 1e9


def forward_gmacs(preset):
    """Giga MACs of one forward time step per image, and the preset's `T`."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from keras_spikformer import presets
    from keras_spikformer.analysis.energy import energy_report

    model = presets.task_class(preset).from_preset(preset, load_weights=False)
    shape = model.inputs[0].shape[1:]
    images = np.zeros((1, *shape), np.float32)
    report = energy_report(model, images)
    return report.ann_macs, report.num_timesteps


def rows(records, gflop_infer, peak):
    """One row per throughput record: achieved GFLOP/s and share of the peak."""
    out = []
    for record in records:
        if "images_per_second" not in record:
            continue
        factor = TRAIN_FLOP_FACTOR if record["mode"] == "train" else 1.0
        achieved = record["images_per_second"] * gflop_infer * factor
        out.append(
            {
                "name": record["_file"],
                "implementation": record.get("implementation", "ours"),
                "mode": record["mode"],
                "images_per_second": record["images_per_second"],
                "gflops": round(achieved, 1),
                "share_of_peak": round(achieved / peak, 3),
            }
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="throughput JSON records")
    parser.add_argument("--preset", default="spikformer_4_384_cifar10")
    parser.add_argument("--json", help="write the roofline record here")
    args = parser.parse_args(argv)

    records = []
    for path in args.records:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("preset") == args.preset:
            records.append(dict(record, _file=os.path.basename(path)))
    if not records:
        parser.error(f"no throughput record of {args.preset!r} among {args.records}")
    batch_sizes = {r.get("batch_size") for r in records}
    peak = matmul_peak_gflops()  # first: nothing else loaded yet
    gmacs, timesteps = forward_gmacs(args.preset)
    gflop_infer = 2 * gmacs * timesteps
    table = rows(records, gflop_infer, peak)
    reference = {r["mode"]: r for r in table if r["implementation"] == "reference"}
    bound = {
        mode: round(peak / r["gflops"], 2)
        for mode, r in reference.items()
        if r["gflops"]
    }
    print(
        f"{args.preset}: {gmacs:.3f} G MACs per image per time step, T={timesteps}: "
        f"{gflop_infer:.2f} GFLOP per image forward, {gflop_infer * TRAIN_FLOP_FACTOR:.2f} "
        f"per training image; float32 matmul peak {peak:.0f} GFLOP/s "
        f"(batch sizes {sorted(batch_sizes)})"
    )
    print("| record | mode | images/s | GFLOP/s | share of matmul peak |")
    print("|---|---|---:|---:|---:|")
    for r in sorted(table, key=lambda r: (r["mode"], -r["gflops"])):
        print(
            f"| {r['name']} | {r['mode']} | {r['images_per_second']} | {r['gflops']} "
            f"| {r['share_of_peak']:.0%} |"
        )
    for mode, ratio in bound.items():
        print(f"{mode}: at 100% of the matmul peak, {ratio}x the reference's images/s")
    if args.json:
        write_record(
            {
                "record": "roofline",
                "preset": args.preset,
                "gmacs_per_image_step": gmacs,
                "num_timesteps": timesteps,
                "gflop_per_image_forward": gflop_infer,
                "train_flop_factor": TRAIN_FLOP_FACTOR,
                "matmul_peak_gflops": round(peak, 1),
                "rows": table,
                "max_ratio_vs_reference": bound,
                **machine_info(),
            },
            args.json,
        )


if __name__ == "__main__":
    main()
