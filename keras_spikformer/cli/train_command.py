"""`keras-spikformer train` and `keras-spikformer evaluate`."""

import json

from keras_spikformer.cli.arguments import (
    class_count,
    non_negative_int,
    positive_float,
    positive_int,
)


def _data_args(parser):
    parser.add_argument("--preset", required=True, help="zoo name or preset directory")
    parser.add_argument(
        "--dataset",
        required=True,
        help="digits | folder | cifar10 | cifar100 | imagenet2012 | another TFDS "
        "name | cifar10dvs | dvsgesture | events",
    )
    parser.add_argument(
        "--data-dir",
        help="where the data lie; default: TFDS's data directory for TFDS names, "
        "$KERAS_SPIKFORMER_CACHE/datasets/NAME for cifar10dvs and dvsgesture. "
        "Missing public datasets are downloaded there once (not while "
        "KERAS_SPIKFORMER_OFFLINE=1); imagenet2012 needs its tar files in DIR/manual",
    )
    parser.add_argument(
        "--split-seed",
        type=non_negative_int,
        help="cifar10dvs only (no official split): draw another seeded 90/10 "
        "split; default: the split file shipped with the package",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help="global batch; default: the recipe's"
    )
    parser.add_argument("--cache-dir", help="cache of event frames")


def add_train_parser(subparsers, name):
    parser = subparsers.add_parser(
        name,
        help="train a preset with its recipe",
        description="Trains with model.fit (XLA-compiled), logs CSV and TensorBoard, "
        "backs up every epoch, and writes DIR/model.keras, DIR/preset/, DIR/metrics.json.",
    )
    _data_args(parser)
    parser.add_argument("--output", "-o", required=True, help="run directory")
    parser.add_argument(
        "--epochs",
        type=positive_int,
        help="epochs in total; the recipe's schedule (warm-up, cooldown) is scaled "
        "to fit; default: the recipe's",
    )
    parser.add_argument(
        "--learning-rate", type=positive_float, help="peak rate; default: the recipe's"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run"
    )
    parser.add_argument("--dtype", help="e.g. mixed_bfloat16")
    parser.add_argument(
        "--weights", default="none", help="none | preset | PATH (preset dir or .keras)"
    )
    parser.add_argument(
        "--num-classes", type=class_count, help="a new head for another class count"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--distribute",
        choices=["none", "data_parallel", "model_parallel"],
        default="none",
        help="multi-device engine of the active backend (JAX keras.distribution, "
        "TF MirroredStrategy); --batch-size is the global batch",
    )
    parser.add_argument(
        "--no-augment", action="store_true", help="skip training augmentation"
    )
    return parser


def add_evaluate_parser(subparsers, name):
    parser = subparsers.add_parser(
        name,
        help="test accuracy of a preset",
        description="Evaluates on the test split.",
    )
    _data_args(parser)
    parser.add_argument(
        "--weights", default="preset", help="preset | PATH (preset dir or .keras)"
    )
    parser.add_argument("--output", "-o", help="write metrics.json here")
    return parser


def run_train(args):
    from keras_spikformer.training.trainer import train

    metrics = train(
        args.preset,
        args.dataset,
        args.output,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        resume=args.resume,
        dtype=args.dtype,
        weights=args.weights,
        num_classes=args.num_classes,
        seed=args.seed,
        learning_rate=args.learning_rate,
        augment=not args.no_augment,
        cache_dir=args.cache_dir,
        distribute=args.distribute,
        split_seed=args.split_seed,
    )
    print(
        f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}, "
        f"{metrics['epochs']} epochs in {metrics['seconds']:.0f} s; results in {args.output}"
    )
    return 0


def run_evaluate(args):
    from pathlib import Path

    from keras_spikformer.io_utils import write_json
    from keras_spikformer.training.run_setup import check_evaluate_output
    from keras_spikformer.training.trainer import evaluate

    check_evaluate_output(args.output)
    metrics = evaluate(
        args.preset,
        args.dataset,
        data_dir=args.data_dir,
        weights=args.weights,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        split_seed=args.split_seed,
    )
    print(json.dumps(metrics, indent=2))
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.output) / "metrics.json", metrics)
    return 0
