"""`keras-spikformer convert`: reference PyTorch checkpoint -> Keras preset directory."""

from keras_spikformer.convert import convert_checkpoint


def image_shape_arg(text):
    """`224` or `224x224` -> (224, 224)."""
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--image-size takes N or HxW, got {text!r}")
    return tuple(parts)


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
    parser.add_argument("checkpoint", help="the checkpoint file")
    parser.add_argument(
        "--output", "-o", required=True, help="preset directory to write"
    )
    parser.add_argument(
        "--preset", help="zoo preset (or directory) the checkpoint must match"
    )
    parser.add_argument("--ema", action="store_true", help="use state_dict_ema")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.add_argument("--num-timesteps", type=int, help="time steps T")
    parser.add_argument("--num-heads", type=int, help="attention heads")
    parser.add_argument(
        "--image-size", help="N or HxW (channels come from the weights)"
    )
    parser.add_argument(
        "--patch-size", type=int, help="total down-sampling of the stem"
    )
    parser.add_argument("--attention-scale", type=float, help="SSA scale")
    parser.add_argument("--encoding", choices=["direct", "frames"])
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args):
    image_shape = None
    if args.image_size:
        image_shape = image_shape_arg(args.image_size)
    report = convert_checkpoint(
        args.checkpoint,
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
        image_size=image_shape,
    )
    print(report.describe())
    return 0
