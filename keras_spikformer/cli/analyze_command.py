"""`keras-spikformer analyze`: firing rates, SOPs, energy and plots on a real batch,
or (`--time-curve`) accuracy against time steps with early exit."""

from keras_spikformer.cli.arguments import positive_int


def add_parser(subparsers, name):
    parser = subparsers.add_parser(
        name,
        help="firing rates, synaptic operations, energy and spike plots",
        description="Measures a preset on the first test images of a dataset and writes "
        "DIR/report.json, DIR/report.md and PNG plots (firing rates, a spike raster, "
        "attention maps). Counting conventions are stated in the report. With "
        "--time-curve it instead streams the test split step by step and writes "
        "DIR/time_curve.json and DIR/time_curve.png: top-1 accuracy after each time "
        "step and the accuracy and mean steps of early-exit rules.",
    )
    parser.add_argument("--preset", required=True, help="zoo name or preset directory")
    parser.add_argument(
        "--weights",
        default=None,
        help="preset | none | PATH (preset dir or .keras); default: the preset's if it has any",
    )
    parser.add_argument(
        "--dataset", required=True, help="as for train (digits works offline)"
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--cache-dir")
    parser.add_argument(
        "--num-images",
        type=positive_int,
        default=None,
        help="first test images used (default: 16; with --time-curve, all)",
    )
    parser.add_argument(
        "--time-curve",
        action="store_true",
        help="accuracy after each time step and with early exit, instead of the report",
    )
    parser.add_argument(
        "--exit-rules",
        nargs="+",
        default=None,
        metavar="RULE:THRESHOLD",
        help="early-exit rules of the time curve, e.g. max_probability:0.9 margin:0.5 "
        "(default: max_probability 0.9, 0.99 and margin 0.5, 0.9)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="time curve stream batch"
    )
    parser.add_argument(
        "--num-steps",
        type=positive_int,
        default=None,
        help="time curve steps (default: the preset's num_timesteps)",
    )
    parser.add_argument("--output", "-o", required=True)
    parser.add_argument("--overwrite", action="store_true")
    return parser


def run(args):
    from keras_spikformer.analysis.run_analysis import REPORT, analyze, test_batch
    from keras_spikformer.io_utils import check_writable_directory
    from keras_spikformer.training.trainer import build_model

    if args.time_curve:
        return run_time_curve(args)
    if args.exit_rules or args.num_steps:
        raise ValueError("--exit-rules and --num-steps apply with --time-curve only.")
    check_writable_directory(args.output, args.overwrite, REPORT)  # before any work
    weights = _weights(args)
    model = build_model(args.preset, weights)
    images = test_batch(
        args.preset, model, args.dataset, args.data_dir, args.num_images or 16,
        args.cache_dir,
    )  # fmt: skip
    report = analyze(model, images, args.output, overwrite=args.overwrite)
    print(report.to_markdown())
    print(f"wrote {args.output}")
    return 0


def _weights(args):
    from keras_spikformer import presets

    if args.weights is not None:
        return args.weights
    has = (presets.resolve(args.preset) / presets.WEIGHTS_FILE).is_file()
    if not has:
        print(
            f"note: {args.preset} has no weights; analysing a freshly initialised model"
        )
    return "preset" if has else "none"


def run_time_curve(args):
    from keras_spikformer.analysis.run_analysis import test_batches
    from keras_spikformer.analysis.time_curve import (
        DEFAULT_RULES,
        TIME_CURVE,
        time_curve,
        write_time_curve,
    )
    from keras_spikformer.io_utils import check_writable_directory
    from keras_spikformer.streaming.early_exit import EarlyExit
    from keras_spikformer.training.trainer import build_model

    rules = [EarlyExit.get(rule) for rule in args.exit_rules or DEFAULT_RULES]
    check_writable_directory(args.output, args.overwrite, TIME_CURVE)  # before any work
    model = build_model(args.preset, _weights(args))
    batches = test_batches(
        args.preset, model, args.dataset, args.batch_size, args.data_dir,
        args.num_images, args.cache_dir,
    )  # fmt: skip
    curve = time_curve(
        model, batches, rules, batch_size=args.batch_size, num_steps=args.num_steps,
        verbose=1,
    )  # fmt: skip
    curve = {"preset": str(args.preset), "dataset": args.dataset, **curve}
    write_time_curve(
        curve,
        args.output,
        overwrite=args.overwrite,
        title=f"{args.preset} on {args.dataset}",
    )
    steps = ", ".join(f"{a:.4f}" for a in curve["accuracy"])
    print(f"top-1 accuracy after steps 1..{curve['num_steps']}: {steps}")
    for point in curve["early_exit"]:
        print(
            f"early exit {EarlyExit.from_config(_rule(point)).describe()}: accuracy "
            f"{point['accuracy']:.4f}, mean steps {point['mean_steps']:.3f}"
        )
    print(f"wrote {args.output}")
    return 0


def _rule(point):
    return {key: point[key] for key in ("rule", "threshold", "min_steps")}
