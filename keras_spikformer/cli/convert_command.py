"""`keras-spikformer convert`: reference PyTorch checkpoint -> Keras preset directory."""

from keras_spikformer.cli.arguments import image_size, positive_float, positive_int


def add_parser(subparsers, name):
    parser = subparsers.add_parser(
        name,
        help="convert a reference (PyTorch) Spikformer checkpoint into a preset",
        description=(
            "Reads .pth/.pth.tar/.pt (without torch; no code from the file runs), "
            ".safetensors or .npz, checks every tensor, and writes a preset "
            "directory that Spikformer.from_preset(DIR) loads."
        ),
    )
    parser.add_argument(
        "checkpoint", help="the checkpoint file, or an http(s):// URL to download"
    )
    parser.add_argument(
        "--output", "-o", required=True, help="preset directory to write"
    )
    parser.add_argument(
        "--preset", help="zoo preset (or directory) the checkpoint must match"
    )
    parser.add_argument("--ema", action="store_true", help="use state_dict_ema")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.add_argument("--num-timesteps", type=positive_int, help="time steps T")
    parser.add_argument("--num-heads", type=positive_int, help="attention heads")
    parser.add_argument(
        "--image-size",
        type=image_size,
        help="N or HxW (channels come from the weights)",
    )
    parser.add_argument(
        "--patch-size", type=positive_int, help="total down-sampling of the stem"
    )
    parser.add_argument("--attention-scale", type=positive_float, help="SSA scale")
    parser.add_argument("--encoding", choices=["direct", "frames"])
    family = parser.add_argument_group(
        "family options (the checkpoint's family is recognised from its tensor names)"
    )
    family.add_argument(
        "--pooling", help="Spike-driven Transformer: 4 flags of 0/1, e.g. 0011 (CIFAR)"
    )
    family.add_argument(
        "--erode", action="store_true", default=None,
        help="Spike-driven Transformer: the CIFAR10-DVS Erode pooling",
    )  # fmt: skip
    family.add_argument(
        "--flavour", choices=["imagenet", "cifar", "dvs"], help="QKFormer flavour"
    )
    family.add_argument(
        "--distillation-head", action="store_true", default=None,
        help="Meta-SpikeFormer: the checkpoint has the distillation head (head_kd)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args):
    from keras_spikformer.convert import convert_checkpoint

    checkpoint = args.checkpoint
    if checkpoint.startswith(("http://", "https://")):
        from keras_spikformer.fetch import fetch_url

        checkpoint = fetch_url(checkpoint, progress=not args.no_progress)
    report = convert_checkpoint(
        checkpoint,
        args.output,
        preset=args.preset,
        use_ema=args.ema,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        num_timesteps=args.num_timesteps,
        num_heads=args.num_heads,
        patch_size=args.patch_size,
        attention_scale=args.attention_scale,
        encoding=args.encoding,
        image_size=args.image_size,
        pooling=args.pooling,
        erode=args.erode,
        flavour=args.flavour,
        distillation_head=args.distillation_head,
    )
    print(report.describe())
    return 0
