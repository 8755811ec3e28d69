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
        [--pipeline streaming|legacy] [--compare-reference]

`--pipeline legacy` measures the pipeline this project had before streaming
(decode and squash to the model size, a shuffle buffer of decoded float32
images, crops on batches). `--compare-reference` also times the reference's
loader (torchvision `ImageFolder` + timm's `create_transform` + `Mixup`,
PIL) on the same files; it needs torch, torchvision and timm.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATASET_VERSION = 1
TFDS_NAME = "synthetic_imagenet_jpeg"


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
    parser.add_argument("--compare-reference", action="store_true")
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
    return Path(args.cache_dir) / f"v{DATASET_VERSION}_{args.num_images}"


def _synthetic_jpeg(rng, index):
    """A photo-like JPEG: smooth colour waves, a few shapes, noise; 300-500 px sides."""
    import io

    import numpy as np
    from PIL import Image

    height, width = (int(v) for v in rng.integers(300, 501, 2))
    y, x = np.mgrid[0:height, 0:width].astype("float32")
    freq = rng.uniform(0.01, 0.1, 6)
    channels = [
        128 + 90 * np.sin(x * freq[c] + index) * np.cos(y * freq[c + 3] - c)
        for c in range(3)
    ]
    image = np.stack(channels, -1) + rng.normal(0, 12, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype("uint8")).save(
        out, "JPEG", quality=90
    )
    return out.getvalue()


def generate(args):
    """Writes `folder/{train,val}/<class>/*.jpg` and a prepared TFDS copy (once)."""
    import numpy as np

    root = dataset_dir(args)
    done = root / "DONE"
    if done.is_file():
        return root
    rng = np.random.default_rng(0)
    num_classes = min(1000, args.num_images)
    num_val = max(num_classes, args.num_images // 20)
    started = time.time()
    for split, count in (("train", args.num_images), ("val", num_val)):
        for i in range(count):
            folder = root / "folder" / split / f"n{i % num_classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{split}_{i:08d}.JPEG").write_bytes(_synthetic_jpeg(rng, i))
    _prepare_tfds(root)
    (root / "DONE").write_text(f"{time.time() - started:.0f} s\n")
    return root


def _tfds_builder_class():
    import tensorflow_datasets as tfds

    class SyntheticImagenetJpeg(tfds.core.GeneratorBasedBuilder):
        """The synthetic folder as a TFDS builder (ImageNet's feature layout)."""

        VERSION = tfds.core.Version("1.0.0")
        name = TFDS_NAME

        def __init__(self, *, folder=None, **kwargs):
            self._folder = folder
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(encoding_format="jpeg"),
                        "label": tfds.features.ClassLabel(num_classes=1000),
                        "file_name": tfds.features.Text(),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {
                "train": self._generate_examples(Path(self._folder) / "train"),
                "validation": self._generate_examples(Path(self._folder) / "val"),
            }

        def _generate_examples(self, split_dir):
            for path in sorted(split_dir.glob("*/*.JPEG")):
                label = int(path.parent.name[1:])
                yield (
                    path.name,
                    {
                        "image": str(path),
                        "label": label,
                        "file_name": path.name,
                    },
                )

    return SyntheticImagenetJpeg


def _prepare_tfds(root):
    builder = _tfds_builder_class()(folder=root / "folder", data_dir=str(root / "tfds"))
    builder.download_and_prepare()


def ensure_dataset(args):
    """The cached dataset, generated in a child process (keeps this one's RSS clean)."""
    root = dataset_dir(args)
    if not (root / "DONE").is_file():
        print(f"Generating {args.num_images} JPEGs in {root} (once) ...", flush=True)
        command = [sys.executable, os.path.abspath(__file__), "--generate-only"]
        command += ["--num-images", str(args.num_images), "--cache-dir", args.cache_dir]
        subprocess.run(command, check=True)
    return root


def load(args, root):
    from keras_spikformer.data.image_datasets import image_folder, tfds_images

    size = (args.image_size, args.image_size)
    if args.format == "tfds":
        _tfds_builder_class()  # registers the builder
        return tfds_images(TFDS_NAME, str(root / "tfds"), size)
    return image_folder(root / "folder", size)


# -------------------------------------------------------------- measuring
def images_per_second(dataset, batch_size, seconds, warmup):
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        try:
            next(iterator)
        except StopIteration:
            break
        count += batch_size
    return count / (time.perf_counter() - started)


def measure_streaming(args, data, recipe):
    from keras_spikformer.data.augment import make_eval_preprocess, make_train_augment
    from keras_spikformer.data.image_pipeline import eval_batches, train_batches

    size, classes = args.image_size, data.num_classes
    augment = make_train_augment(recipe, size, classes, seed=0)
    train = train_batches(data.records.train, augment, args.batch_size, epochs=1000)
    train_ips = images_per_second(
        train, args.batch_size, args.seconds, args.warmup_batches
    )
    evaluate = eval_batches(
        data.records.train, make_eval_preprocess(recipe, size, classes), args.batch_size
    ).repeat()
    eval_ips = images_per_second(
        evaluate, args.batch_size, args.seconds / 2, args.warmup_batches
    )
    return train_ips, eval_ips


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
    train_ips = images_per_second(
        train, args.batch_size, args.seconds, args.warmup_batches
    )
    evaluate = train_ds.batch(args.batch_size).map(
        make_eval_preprocess(recipe, args.image_size, 1000)
    )
    eval_ips = images_per_second(
        evaluate.repeat().prefetch(2), args.batch_size, args.seconds / 2, 1
    )
    return train_ips, eval_ips


def measure_reference(args, root, recipe):
    """torchvision ImageFolder + timm's transforms and Mixup (the reference's loader)."""
    try:
        import timm.data
        import torch
        import torchvision
    except ImportError as error:
        raise SystemExit(
            f"--compare-reference needs torch, torchvision and timm ({error}); "
            "`pip install torch torchvision timm` or drop the flag."
        ) from None
    aug = recipe.augment
    norm = recipe.normalize
    ra = aug.get("rand_augment", {})
    transform = timm.data.create_transform(
        args.image_size, is_training=True,
        scale=tuple(aug.get("random_resized_crop_scale", (0.08, 1.0))),
        hflip=0.5 if aug.get("horizontal_flip") else 0.0,
        auto_augment=f"rand-m{ra.get('magnitude', 9)}-mstd{ra.get('magnitude_std', 0.5)}-inc1",
        interpolation="bicubic", re_prob=aug.get("random_erasing", 0.0),
        mean=tuple(norm["mean"]), std=tuple(norm["std"]),
    )  # fmt: skip
    data = torchvision.datasets.ImageFolder(str(root / "folder" / "train"), transform)
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=cores(), persistent_workers=True,
    )  # fmt: skip
    mixup = timm.data.Mixup(
        mixup_alpha=aug.get("mixup_alpha", 0.0), cutmix_alpha=aug.get("cutmix_alpha", 0.0),
        label_smoothing=recipe.label_smoothing, num_classes=len(data.classes),
    )  # fmt: skip

    def batches():
        while True:
            for images, labels in loader:
                yield mixup(images, labels)

    return images_per_second(
        batches(), args.batch_size, args.seconds, args.warmup_batches
    )


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
    if args.pipeline == "legacy":
        train_ips, eval_ips = measure_legacy(args, root, recipe)
    else:
        data = load(args, root)
        train_ips, eval_ips = measure_streaming(args, data, recipe)
        record["skipped_inputs"] = data.input_report()
    record["peak_rss_mb"] = round(peak_rss_mb(), 1)
    record["train_images_per_second"] = round(train_ips, 1)
    record["train_images_per_second_per_core"] = round(train_ips / cores(), 1)
    record["eval_images_per_second"] = round(eval_ips, 1)
    if args.compare_reference:
        ref = measure_reference(args, root, recipe)
        record["reference_train_images_per_second"] = round(ref, 1)
    record["keras"] = keras.__version__
    record["dataset_dir"] = str(root)
    return record


def main(argv=None):
    args = parse_args(argv)
    if args.generate_only:
        generate(args)
        return None
    record = run(args)
    keys = [k for k in record if k not in ("dataset_dir", "skipped_inputs", "keras")]
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
