"""Training and inference throughput and peak memory of a preset of any family.

Measures images/second (median over timed steps, after warm-up and
compilation) and the process's peak resident memory, prints a table and writes
one JSON record.

Usage:
    python benchmarks/throughput.py --preset spikformer_4_384_cifar10 \\
        --backend jax --mode train --batch-size 32 [--dtype mixed_bfloat16] \\
        [--remat] [--steps 5] [--warmup 2] [--input arrays|pipeline] \\
        [--fused] --json results/jax_train.json

`--fused` (inference only) times the batch-norm-folded copy of the model
(`keras_spikformer.inference.fuse`).

`--input pipeline` trains through `fit` (or predicts) on the streaming input
pipeline (the preset recipe's augmentation) over the synthetic JPEG dataset
of `benchmarks/input_pipeline.py` (generated once under `--cache-dir`);
`--input arrays` (the default) repeats one fixed in-memory batch.

The backend must be chosen before Keras is imported, so each run is one
process: run the script once per configuration.
"""

import argparse
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import git_commit, machine_info, write_record  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="spikformer_4_384_cifar10")
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "torch"], required=True
    )
    parser.add_argument("--mode", choices=["train", "infer"], required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--dtype", default="float32", help="float32 | mixed_bfloat16 | mixed_float16"
    )
    parser.add_argument(
        "--remat", action="store_true", help="recompute activations in backward"
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="--mode infer: time the batch-norm-folded model (inference.fuse)",
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps after the first"
    )
    parser.add_argument("--json", help="write the record here")
    parser.add_argument(
        "--input",
        choices=["arrays", "pipeline"],
        default="arrays",
        help="arrays: one fixed batch; pipeline: fit/predict on the streaming "
        "pipeline over the synthetic JPEG dataset of benchmarks/input_pipeline.py",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=0,
        help="synthetic dataset size for --input pipeline (default: enough for "
        "one epoch of the timed steps)",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.path.join(
            os.path.expanduser("~"), ".cache", "keras_spikformer", "input_pipeline"
        ),
        help="where --input pipeline's synthetic dataset is generated (once)",
    )
    args = parser.parse_args(argv)
    if args.fused and args.mode != "infer":
        parser.error(
            "--fused folds batch norms for inference; use it with --mode infer"
        )
    return args


def peak_rss_mb():
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def device_name():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return f"{platform.processor() or platform.machine()} CPU x{os.cpu_count()}"


def source_commit():
    """Short git commit of the imported keras_spikformer, or "" outside a checkout."""
    import keras_spikformer

    return git_commit(os.path.dirname(os.path.abspath(keras_spikformer.__file__)))


def random_batch(model, batch_size):
    """The benchmarks' fixed batch: normal images and random labels, seed 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (batch_size,) + tuple(model.inputs[0].shape[1:])
    x = rng.normal(size=shape).astype("float32")
    return x, rng.integers(0, model.num_classes, batch_size)


def compile_for_training(model, jit_compile):
    """AdamW and sparse cross-entropy on logits: the timed training step."""
    import keras

    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )


def run(args):
    os.environ["KERAS_BACKEND"] = args.backend
    import keras
    import numpy as np

    from keras_spikformer import ImageClassifier

    options = {"remat": True} if args.remat else {}
    if args.dtype != "float32":
        options["dtype"] = args.dtype
    model = ImageClassifier.from_preset(args.preset, load_weights=False, **options)
    if args.fused:
        from keras_spikformer.inference import fuse

        model = fuse(model)
    if args.input == "pipeline":
        return _pipeline_record(args, model, _run_pipeline(args, model))
    x, y = random_batch(model, args.batch_size)
    if args.mode == "train":
        compile_for_training(model, jit_compile=args.backend != "torch")

        def step():
            model.train_on_batch(x, y)
    else:
        model.compile(jit_compile=args.backend != "torch")

        def step():
            np.asarray(model.predict_on_batch(x))

    started = time.perf_counter()
    step()
    compile_seconds = time.perf_counter() - started
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "preset": args.preset,
        "backend": args.backend,
        "mode": args.mode,
        "input": "arrays",
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "remat": args.remat,
        "fused": args.fused,
        "num_timesteps": model.backbone.num_timesteps,
        "images_per_second": round(args.batch_size / median, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "step_seconds": [round(t, 4) for t in times],
        "compile_seconds": round(compile_seconds, 2),
        "device": device_name(),
        "keras": keras.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "commit": source_commit(),
    }


class _StepTimer:
    """Seconds between consecutive batch ends (data waiting included)."""

    def __init__(self):
        self.ends = []

    def __call__(self, *args, **kwargs):
        self.ends.append(time.perf_counter())


def _run_pipeline(args, model):
    """Times `fit` (or `predict`) on the real pipeline; returns the step times."""
    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import input_pipeline

    from keras_spikformer.data.image_datasets import image_folder
    from keras_spikformer.data.image_pipeline import eval_batches, train_batches
    from keras_spikformer.training.recipe import Recipe
    from keras_spikformer.training.trainer import preprocessors

    steps = args.warmup + args.steps + 1
    pipeline_args = input_pipeline.parse_args(
        ["--num-images", str(args.num_images or args.batch_size * steps)]
        + ["--cache-dir", args.cache_dir]
    )
    root = input_pipeline.ensure_dataset(pipeline_args)
    image_shape = tuple(model.inputs[0].shape[1:])
    data = image_folder(root / "folder", image_shape[:2], channels=image_shape[2])
    if hasattr(model, "apply_preprocessor"):
        model.apply_preprocessor = False  # the pipeline normalises
    train_aug, eval_map = preprocessors(
        Recipe.from_preset(args.preset), model, 0, augment=True
    )
    timer = _StepTimer()
    if args.mode == "train":
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-4),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=[],
            jit_compile=args.backend != "torch",
        )
        ds = train_batches(data.records.train, train_aug, args.batch_size, epochs=100)
        callback = keras.callbacks.LambdaCallback(on_train_batch_end=timer)
        started = time.perf_counter()
        model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[callback], verbose=0)
    else:
        model.compile(jit_compile=args.backend != "torch")
        ds = eval_batches(data.records.train, eval_map, args.batch_size, True).repeat()
        callback = keras.callbacks.LambdaCallback(on_predict_batch_end=timer)
        started = time.perf_counter()
        model.predict(ds, steps=steps, callbacks=[callback], verbose=0)
    ends = [started] + timer.ends
    times = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return times[0], times[1 + args.warmup :]


def _pipeline_record(args, model, timing):
    import keras

    compile_seconds, times = timing
    median = statistics.median(times)
    return {
        "preset": args.preset,
        "backend": args.backend,
        "mode": args.mode,
        "input": "pipeline",
        "batch_size": args.batch_size,
        "dtype": args.dtype,
        "remat": args.remat,
        "fused": args.fused,
        "num_timesteps": model.backbone.num_timesteps,
        "images_per_second": round(args.batch_size / median, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "step_seconds": [round(t, 4) for t in times],
        "compile_seconds": round(compile_seconds, 2),
        "device": device_name(),
        "keras": keras.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "commit": source_commit(),
    }


def main(argv=None):
    args = parse_args(argv)
    record = run(args)
    # The machine beside every figure: collect.py gives no ratio across CPUs.
    record.update(machine_info(), threads=_threads(args.backend))
    keys = [
        "preset",
        "backend",
        "mode",
        "input",
        "batch_size",
        "dtype",
        "remat",
        "fused",
        "images_per_second",
        "peak_rss_mb",
        "compile_seconds",
    ]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    print("| " + " | ".join(str(record[k]) for k in keys) + " |")
    if args.json:
        write_record(record, args.json)
    return record


def _threads(backend):
    """Compute threads of the backend's CPU runtime (torch's setting; else cores)."""
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    return os.cpu_count()


if __name__ == "__main__":
    main()
