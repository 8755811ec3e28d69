"""Accuracy with count-split frames (training) vs time-window frames (online).

Trains `spikformer_tiny_dvs` (T=4, 64x64 frames) on synthetic CIFAR10-DVS
style recordings (`testing.synthetic_events`: 10 classes, each a spot of
events on a 128x128 sensor, `--duration-us` long) framed as the DVS recipes
do: SpikingJelly's fixed event-count split (`split_by="number"`), which needs
the recording's total event count and so only works offline. Then it
evaluates the same model on the same test recordings framed three ways:

- `count_split`: as in training;
- `time_split`: SpikingJelly's `split_by="time"` (T equal windows over the
  recording's own span; offline too, it needs the last timestamp);
- `online_windows`: `TimeWindowFramer` fed the events in chunks, with fixed
  windows of `duration / T` from the recording's start, the first T frames
  (what a live camera can give).

Two event-rate profiles: `uniform` (the synthetic recordings as written:
a constant rate, where the framings nearly agree) and `varying` (timestamps
warped `t -> D * (t / D) ** 3`: a burst at the start that fades, as a
gesture that slows down; the framings then differ) and `durations` (each
recording lasts 0.5x to 2x `--duration-us` at a constant rate, as real
recordings differ: fixed windows then cover part of a long recording, or
pad a short one with empty frames). With
`--train-online` a second model is trained on online-window frames and
evaluated the same way.

Usage:
    python benchmarks/online_framing.py [--json benchmarks/results/online_framing.json]
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import (  # noqa: E402
    git_commit,
    machine_info,
    vector_summary,
    write_record,
)

SENSOR = (128, 128)
FRAMINGS = ("count_split", "time_split", "online_windows")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--num-events", type=int, default=64, help="per recording")
    parser.add_argument("--duration-us", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=97, help="events per push")
    parser.add_argument("--rates", default="uniform,varying,durations")
    parser.add_argument("--train-online", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the record here")
    return parser.parse_args(argv)


def recordings(per_class, num_events, duration, rate, rng):
    """`[(events, label)]`, `per_class` recordings of each of the 10 classes."""
    from keras_spikformer.testing.synthetic_events import synthetic_events

    out = []
    for label in range(10):
        for _ in range(per_class):
            span = duration
            if rate == "durations":  # 0.5x to 2x the nominal duration
                span = int(rng.integers(duration // 2, 2 * duration + 1))
            ev = synthetic_events(
                label, 10, num_events, SENSOR, duration_us=span, rng=rng
            )
            if rate == "varying":  # monotone warp: order kept, a fading burst
                ev["t"] = (duration * (ev["t"] / duration) ** 3).astype(np.int64)
            out.append((ev, label))
    return out


def online_frames(ev, num_frames, window, chunk):
    """The first `num_frames` frames a `TimeWindowFramer` gives, pushed in chunks."""
    from keras_spikformer.data import TimeWindowFramer

    framer = TimeWindowFramer(SENSOR, window=window, t_start=0)
    frames = []
    for start in range(0, ev["t"].size, chunk):
        part = slice(start, start + chunk)
        frames += framer.push(
            ev["x"][part], ev["y"][part], ev["t"][part], ev["p"][part]
        )
        if len(frames) >= num_frames:  # a live model would have its T steps
            break
    else:
        frames += framer.flush()
    frames += [np.zeros([*SENSOR, 2], np.float32)] * (num_frames - len(frames))
    return np.stack(frames[:num_frames])


def frame_set(recs, framing, num_frames, image_size, duration, chunk):
    """`(frames [N, T, h, w, 2], labels [N])` of `recs` framed one way."""
    from keras_spikformer.data.event_frames import (
        integrate_events_to_frames,
        pool_frames,
    )
    from keras_spikformer.data.time_window_frames import (
        integrate_events_by_time_window,
    )

    window = duration // num_frames
    out = []
    for ev, _ in recs:
        if framing == "online_windows":
            frames = online_frames(ev, num_frames, window, chunk)
            offline = integrate_events_by_time_window(
                ev, window, SENSOR, t_start=0, num_frames=num_frames
            )
            np.testing.assert_array_equal(frames, offline)  # the same frames
        else:
            split_by = "number" if framing == "count_split" else "time"
            frames = integrate_events_to_frames(ev, num_frames, split_by, SENSOR)
        out.append(pool_frames(frames, image_size))
    return np.stack(out), np.array([label for _, label in recs], np.int32)


def train(x, y, args):
    import keras

    from keras_spikformer import Spikformer

    keras.utils.set_random_seed(args.seed)
    model = Spikformer.from_preset("spikformer_tiny_dvs", load_weights=False)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=keras.backend.backend() in ("tensorflow", "jax"),
    )
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
    return model


def run(args):
    import keras

    model_t = 4  # spikformer_tiny_dvs: T=4, 64x64
    image_size = 64
    results, per_frame = {}, {}
    started = time.perf_counter()
    for rate in args.rates.split(","):
        rng = np.random.default_rng(args.seed)
        train_recs = recordings(
            args.train_per_class, args.num_events, args.duration_us, rate, rng
        )
        test_recs = recordings(
            args.test_per_class, args.num_events, args.duration_us, rate, rng
        )
        sets = {
            f: frame_set(
                test_recs, f, model_t, image_size, args.duration_us, args.chunk
            )
            for f in FRAMINGS
        }
        per_frame[rate] = {
            f: (sets[f][0].sum(axis=(2, 3, 4)).mean(axis=0)).round(1).tolist()
            for f in FRAMINGS
        }
        trained_on = ["count_split"] + (["online_windows"] * args.train_online)
        results[rate] = {}
        for train_framing in trained_on:
            x, y = frame_set(
                train_recs,
                train_framing,
                model_t,
                image_size,
                args.duration_us,
                args.chunk,
            )
            model = train(x, y, args)
            results[rate][f"trained_on_{train_framing}"] = {
                f: float(model.evaluate(*sets[f], verbose=0)[1]) for f in FRAMINGS
            }
            print(rate, train_framing, results[rate][f"trained_on_{train_framing}"])
    info = machine_info()
    return {
        "record": "online_framing",
        "command": "python " + " ".join([os.path.relpath(__file__), *sys.argv[1:]]),
        "backend": keras.backend.backend(),
        "commit": git_commit(os.path.dirname(os.path.abspath(__file__))),
        **info,
        "cpu": f"{info['cpu_model']}, {vector_summary(info['cpu_flags'])}",
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "preset": "spikformer_tiny_dvs",
        "num_frames": model_t,
        "test_accuracy": results,
        "mean_events_per_test_frame": per_frame,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv=None):
    args = parse_args(argv)
    record = run(args)
    print(json.dumps(record["test_accuracy"], indent=2))
    print("mean events per frame:", json.dumps(record["mean_events_per_test_frame"]))
    print(f"{record['cpu']}, {record['cpu_count']} cores, {record['seconds']} s")
    if args.json:
        write_record(record, args.json)
    return record


if __name__ == "__main__":
    main()
