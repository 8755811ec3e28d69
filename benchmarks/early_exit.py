"""Early exit on a trained preset: accuracy and mean steps against full-T accuracy.

Streams the test split that `keras-spikformer evaluate` scores (the same
loading, preprocessing and batches) one time step at a time and reports the
top-1 accuracy after each step and, at a few thresholds of each early-exit
rule (`keras_spikformer.streaming.EarlyExit`), the accuracy and the mean
steps per image. The full-T accuracy of `evaluate` (the multi-step model) is
measured beside it: the curve's last point must equal it. The figures are
accuracies, so machine load does not change them.

Usage:
    python benchmarks/early_exit.py [--preset spikformer_tiny_digits] [--dataset digits]
        [--rules max_probability:0.9 margin:0.5 ...] [--json results/early_exit_digits.json]
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

from machine_info import git_commit, machine_info, vector_summary, write_record

RULES = (
    "max_probability:0.9",
    "max_probability:0.99",
    "max_probability:0.999",
    "margin:0.5",
    "margin:0.9",
    "margin:0.99",
)


def measure(preset, dataset, rules, batch_size):
    """The record's figures: the curve, each rule, and `evaluate`'s accuracy."""
    import keras

    from keras_spikformer.analysis.run_analysis import test_batches
    from keras_spikformer.analysis.time_curve import time_curve
    from keras_spikformer.training.trainer import build_model, evaluate

    model = build_model(preset, "preset")
    batches = test_batches(preset, model, dataset, batch_size)
    started = time.time()
    curve = time_curve(model, batches, rules, batch_size=batch_size)
    seconds = time.time() - started
    full = evaluate(preset, dataset, verbose=0)
    return {
        "backend": keras.backend.backend(),
        "full_t_accuracy": full["test_accuracy"],
        "num_test": full["num_test"],
        "curve_seconds": round(seconds, 1),
        **curve,
    }


def markdown(record):
    """The table of benchmarks/README.md."""
    steps = record["num_steps"]
    rows = [
        f"| rule | threshold | accuracy | mean steps | stopped before step {steps} |",
        "|---|---|---|---|---|",
        f"| none (all {steps} steps, `evaluate`) | - | "
        f"{100 * record['full_t_accuracy']:.2f}% | {steps} | 0% |",
    ]
    for t, accuracy in enumerate(record["accuracy"][:-1], start=1):
        rows.append(
            f"| stop every image at step {t} | - | {100 * accuracy:.2f}% | {t} | 100% |"
        )
    for point in record["early_exit"]:
        rows.append(
            f"| {point['rule']} | {point['threshold']:g} | "
            f"{100 * point['accuracy']:.2f}% | {point['mean_steps']:.3f} | "
            f"{100 * point['exited_early']:.1f}% |"
        )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="spikformer_tiny_digits")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--rules", nargs="+", default=list(RULES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)
    record = {
        "record": "early_exit",
        "preset": args.preset,
        "dataset": args.dataset,
        "command": "python benchmarks/early_exit.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(Path(__file__).parent),
        **machine_info(),
        **measure(args.preset, args.dataset, args.rules, args.batch_size),
    }
    print(
        f"{record['cpu_model']}, {vector_summary(record['cpu_flags'])}, "
        f"{record['backend']}, commit {record['commit']}"
    )
    print(markdown(record))
    last = record["accuracy"][-1]
    if abs(last - record["full_t_accuracy"]) > 1e-6:
        print(
            f"warning: the stream's accuracy at step {record['num_steps']} ({last}) "
            f"differs from evaluate's ({record['full_t_accuracy']})"
        )
    if args.json:
        write_record(record, args.json)
    return record


if __name__ == "__main__":
    main()
