"""`keras-spikformer analyze`: firing rates, SOPs, energy and plots on a real batch."""

from keras_spikformer.cli.arguments import positive_int


def add_parser(subparsers, name):
    parser = subparsers.add_parser(
        name,
        help="firing rates, synaptic operations, energy and spike plots",
        description="Measures a preset on the first test images of a dataset and writes "
        "DIR/report.json, DIR/report.md and PNG plots (firing rates, a spike raster, "
        "attention maps). Counting conventions are stated in the report.",
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
    parser.add_argument("--num-images", type=positive_int, default=16)
    parser.add_argument("--output", "-o", required=True)
    parser.add_argument("--overwrite", action="store_true")
    return parser


def run(args):
    from keras_spikformer import presets
    from keras_spikformer.analysis.run_analysis import REPORT, analyze, test_batch
    from keras_spikformer.io_utils import check_writable_directory
    from keras_spikformer.training.trainer import build_model

    check_writable_directory(args.output, args.overwrite, REPORT)  # before any work
    weights = args.weights
    if weights is None:
        has = (presets.resolve(args.preset) / presets.WEIGHTS_FILE).is_file()
        weights = "preset" if has else "none"
        if not has:
            print(
                f"note: {args.preset} has no weights; analysing a freshly initialised model"
            )
    model = build_model(args.preset, weights)
    images = test_batch(
        args.preset, model, args.dataset, args.data_dir, args.num_images, args.cache_dir
    )
    report = analyze(model, images, args.output, overwrite=args.overwrite)
    print(report.to_markdown())
    print(f"wrote {args.output}")
    return 0
