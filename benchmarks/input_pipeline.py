"""Input-pipeline throughput and peak memory on a synthetic ImageNet-format dataset.

Generates once (cached, never committed) a dataset of JPEGs of varied sizes
(300-500 px sides, up to 1000 classes) in folder form and as a prepared TFDS
builder, then measures in this process: training-pipeline images/s (the
preset recipe's augmentation: crop while decoding, flip, RandAugment,
normalise, erasing, MixUp/CutMix), evaluation-pipeline images/s (resize,
centre crop, normalise), and the peak resident memory. One dataset size per
process, so that peak RSS belongs to that size.

Usage:
    python benchmarks/input_pipeline.py --num-images 2000 --image-size 224 \\
        --json results/pipeline_2k.json [--format folder|tfds] \\
        [--pipeline streaming|legacy] [--compare-reference] [--cold-cache]

`--pipeline legacy` measures the pipeline this project had before streaming
(decode and squash to the model size, a shuffle buffer of decoded float32
images, crops on batches). `--compare-reference` also times the reference's
loader (torchvision `ImageFolder` + timm's `create_transform` + `Mixup`,
PIL) on the same files; it needs torch, torchvision and timm. `--cold-cache`
drops the files from the page cache before each timed training pipeline (a
first epoch read from disk); without it the files are read as found (warm
after a previous run).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic_imagenet import (  # noqa: E402
    TFDS_NAME,
    _prepare_tfds,
    _tfds_builder_class,
    generate,
)
from synthetic_imagenet import dataset_dir as _dataset_dir  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", help="write the record here")
    parser.add_argument("--format", choices=["folder", "tfds"], default="folder")
    parser.add_argument(
        "--pipeline", choices=["streaming", "legacy"], default="streaming"
    )
    parser.add_argument("--preset", default="spikformer_8_768_imagenet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds")
    parser.add_argument("--warmup-batches", type=int, default=3)
    parser.add_argument(
        "--cache-dir",
        default=os.path.join(
            os.path.expanduser("~"), ".cache", "keras_spikformer", "input_pipeline"
        ),
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="drop the dataset's files from the page cache before each timed "
        "training pipeline (ours, then the reference's): files come from disk",
    )
    parser.add_argument("--compare-reference", action="store_true")
    parser.add_argument(
        "--reference-python",
        help="the Python (of another venv) with torch, torchvision and timm that "
        "--compare-reference runs the reference loader with (default: this one)",
    )
    parser.add_argument("--reference-only", help=argparse.SUPPRESS)
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peak_rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


# ------------------------------------------------------------ the dataset
def dataset_dir(args):
    return _dataset_dir(args.cache_dir, args.num_images)


def ensure_dataset(args):
    """The cached dataset, generated in a child process (keeps this one's RSS clean).

    The folder form is written first; the TFDS copy is prepared the first
    time `--format tfds` asks for it.
    """
    root = dataset_dir(args)
    fmt = getattr(args, "format", "folder")
    ready = (root / "DONE").is_file() and (
        fmt != "tfds" or (root / "TFDS_DONE").is_file()
    )
    if not ready:
        print(f"Generating {args.num_images} JPEGs ({fmt}) in {root} (once) ...")
        command = [sys.executable, os.path.abspath(__file__), "--generate-only"]
        command += ["--num-images", str(args.num_images), "--cache-dir", args.cache_dir]
        command += ["--format", fmt]
        subprocess.run(command, check=True)
    return root


def load(args, root):
    from keras_spikformer.data.image_datasets import image_folder, tfds_images

    size = (args.image_size, args.image_size)
    if args.format == "tfds":
        _tfds_builder_class()  # registers the builder
        return tfds_images(TFDS_NAME, str(root / "tfds"), size)
    return image_folder(root / "folder", size)


def evict_page_cache(root):
    """Drops the files under `root` from the page cache, so the next read is cold.

    `posix_fadvise(POSIX_FADV_DONTNEED)` per file: the kernel discards the
    file's clean cached pages (no root needed).

    Args:
        root: folder (a `pathlib.Path` or str).

    Returns:
        Number of files advised.
    """
    if not hasattr(os, "posix_fadvise"):
        raise SystemExit("--cold-cache needs os.posix_fadvise (Linux); drop it.")
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            count += 1
    return count


# -------------------------------------------------------------- measuring
def cpu_seconds():
    """CPU seconds of this process, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def images_per_second(dataset, batch_size, seconds, warmup, cpu=None):
    """Wall-clock images/s; with a `cpu` dict, also images per CPU second."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    count, started, cpu_started = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - started < seconds:
        try:
            next(iterator)
        except StopIteration:
            break
        count += batch_size
    if cpu is not None:
        cpu["images_per_cpu_second"] = count / max(cpu_seconds() - cpu_started, 1e-9)
    return count / (time.perf_counter() - started)


def measure_streaming(args, data, recipe):
    from keras_spikformer.data.augment import make_eval_preprocess, make_train_augment
    from keras_spikformer.data.image_pipeline import eval_batches, train_batches

    size, classes = args.image_size, data.num_classes
    augment = make_train_augment(recipe, size, classes, seed=0)
    train = train_batches(data.records.train, augment, args.batch_size, epochs=1000)
    cpu = {}
    train_ips = images_per_second(
        train, args.batch_size, args.seconds, args.warmup_batches, cpu
    )
    evaluate = eval_batches(
        data.records.train, make_eval_preprocess(recipe, size, classes), args.batch_size
    ).repeat()
    eval_ips = images_per_second(
        evaluate, args.batch_size, args.seconds / 2, args.warmup_batches
    )
    return train_ips, eval_ips, cpu


def measure_legacy(args, root, recipe):
    """The pre-streaming pipeline: decode + squash to size, decoded shuffle buffer."""
    import keras
    import tensorflow as tf

    from keras_spikformer.data.augment import make_eval_preprocess, make_train_augment

    def folder(split):
        ds = keras.utils.image_dataset_from_directory(
            root / "folder" / split, label_mode="int", batch_size=None,
            image_size=(args.image_size, args.image_size), shuffle=False, verbose=False,
        )  # fmt: skip
        return ds.map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)))

    train_ds, n = folder("train"), args.num_images
    augment = make_train_augment(recipe, args.image_size, 1000, seed=0)
    train = train_ds.shuffle(min(n, 50_000), seed=0).repeat()
    train = train.batch(args.batch_size, drop_remainder=True)
    train = train.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    cpu = {}
    train_ips = images_per_second(
        train, args.batch_size, args.seconds, args.warmup_batches, cpu
    )
    evaluate = train_ds.batch(args.batch_size).map(
        make_eval_preprocess(recipe, args.image_size, 1000)
    )
    eval_ips = images_per_second(
        evaluate.repeat().prefetch(2), args.batch_size, args.seconds / 2, 1
    )
    return train_ips, eval_ips, cpu


def reference_settings(recipe):
    """The recipe's arguments of timm's `create_transform` and `Mixup` (JSON)."""
    aug, norm = recipe.augment, recipe.normalize
    ra = aug.get("rand_augment", {})
    return {
        "scale": list(aug.get("random_resized_crop_scale", (0.08, 1.0))),
        "hflip": 0.5 if aug.get("horizontal_flip") else 0.0,
        "auto_augment": f"rand-m{ra.get('magnitude', 9)}"
        f"-mstd{ra.get('magnitude_std', 0.5)}-inc1",
        "interpolation": (recipe.eval or {}).get("interpolation", "bicubic"),
        "re_prob": aug.get("random_erasing", 0.0),
        "mean": list(norm["mean"]),
        "std": list(norm["std"]),
        "mixup_alpha": aug.get("mixup_alpha", 0.0),
        "cutmix_alpha": aug.get("cutmix_alpha", 0.0),
        "label_smoothing": recipe.label_smoothing,
    }


def measure_reference(args, root, settings):
    """torchvision ImageFolder + timm's transforms and Mixup (the reference's loader).

    A `torch.utils.data.DataLoader` with one worker process per core, PIL
    decoding, `drop_last`, the recipe's `create_transform(is_training=True)`
    and `Mixup` on each batch.
    """
    try:
        import PIL
        import timm.data
        import torch
        import torchvision
    except ImportError as error:
        raise SystemExit(
            f"--compare-reference needs torch, torchvision and timm ({error}); "
            "install them or point --reference-python at a venv that has them."
        ) from None
    transform = timm.data.create_transform(
        args.image_size, is_training=True, scale=tuple(settings["scale"]),
        hflip=settings["hflip"], auto_augment=settings["auto_augment"],
        interpolation=settings["interpolation"], re_prob=settings["re_prob"],
        mean=tuple(settings["mean"]), std=tuple(settings["std"]),
    )  # fmt: skip
    data = torchvision.datasets.ImageFolder(str(root / "folder" / "train"), transform)
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=cores(), persistent_workers=True,
    )  # fmt: skip
    mixup = timm.data.Mixup(
        mixup_alpha=settings["mixup_alpha"], cutmix_alpha=settings["cutmix_alpha"],
        label_smoothing=settings["label_smoothing"], num_classes=len(data.classes),
    )  # fmt: skip

    def batches():
        while True:
            for images, labels in loader:
                yield mixup(images, labels)

    return {
        "reference_train_images_per_second": images_per_second(
            batches(), args.batch_size, args.seconds, args.warmup_batches
        ),
        "reference_versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "pillow": PIL.__version__,
        },
    }


def run_reference(args, root, recipe):
    """The reference loader's record, here or in `--reference-python`'s venv."""
    settings = reference_settings(recipe)
    if not args.reference_python:
        return measure_reference(args, root, settings)
    command = [args.reference_python, os.path.abspath(__file__)]
    command += ["--reference-only", json.dumps(settings)]
    command += ["--num-images", str(args.num_images), "--cache-dir", args.cache_dir]
    command += ["--image-size", str(args.image_size), "--seconds", str(args.seconds)]
    command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"The reference loader failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args):
    import keras

    from keras_spikformer.training.recipe import Recipe

    root = ensure_dataset(args)
    recipe = Recipe.from_preset(args.preset)
    record = {
        "num_images": args.num_images,
        "image_size": args.image_size,
        "format": args.format,
        "pipeline": args.pipeline,
        "preset_recipe": args.preset,
        "batch_size": args.batch_size,
        "cores": cores(),
    }
    if args.cold_cache:
        evict_page_cache(root)
    if args.pipeline == "legacy":
        train_ips, eval_ips, cpu = measure_legacy(args, root, recipe)
    else:
        data = load(args, root)
        train_ips, eval_ips, cpu = measure_streaming(args, data, recipe)
        record["skipped_inputs"] = data.input_report()
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    record["train_images_per_second"] = round(train_ips, 1)
    record["train_images_per_second_per_core"] = round(train_ips / cores(), 1)
    record["train_images_per_cpu_second"] = round(cpu["images_per_cpu_second"], 1)
    record["eval_images_per_second"] = round(eval_ips, 1)
    record["page_cache"] = "cold" if args.cold_cache else "as found"
    if args.compare_reference:
        if args.cold_cache:
            evict_page_cache(root)
        ref = run_reference(args, root, recipe)
        ips = ref["reference_train_images_per_second"]
        record["reference_train_images_per_second"] = round(ips, 1)
        record["reference_train_images_per_second_per_core"] = round(ips / cores(), 1)
        record["reference_versions"] = ref["reference_versions"]
    record["load_average"] = [round(v, 2) for v in os.getloadavg()]
    record["keras"] = keras.__version__
    record["dataset_dir"] = str(root)
    return record


def main(argv=None):
    args = parse_args(argv)
    if args.reference_only:  # in --reference-python's venv: no keras_spikformer
        record = measure_reference(
            args, dataset_dir(args), json.loads(args.reference_only)
        )
        print(json.dumps(record))
        return record
    if args.generate_only:
        root = generate(args)
        if args.format == "tfds":
            _prepare_tfds(root)
        return None
    record = run(args)
    skip = ("dataset_dir", "skipped_inputs", "keras", "reference_versions")
    keys = [k for k in record if k not in skip]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    print("| " + " | ".join(str(record[k]) for k in keys) + " |")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main()
