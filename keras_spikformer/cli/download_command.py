"""`keras-spikformer download PRESET`: fetch a preset's published checkpoint, convert it."""


def add_parser(subparsers, name):
    parser = subparsers.add_parser(
        name,
        help="download and convert a preset's published checkpoint",
        description=(
            "Fetches the checkpoint that the preset's metadata names (weights_source; "
            "$KERAS_SPIKFORMER_MIRROR replaces the host), verifies it, converts it "
            "with the preset as the target and keeps both in the cache "
            "($KERAS_SPIKFORMER_CACHE, default ~/.cache/keras_spikformer). "
            "from_preset(PRESET) then loads the weights from the cache."
        ),
    )
    parser.add_argument("preset", help="zoo preset name or preset directory")
    parser.add_argument(
        "--output", "-o", help="also write the converted preset to this directory"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args):
    import shutil

    from keras_spikformer import fetch, presets
    from keras_spikformer.io_utils import atomic_directory, check_writable_directory

    owned = ("keras-spikformer preset", presets.is_preset_directory)
    if args.output:
        check_writable_directory(args.output, args.overwrite, owned)
    directory = presets.resolve(args.preset)
    source = fetch.weights_source_of(directory)
    if source is None:
        note = (presets.read_json(directory / presets.METADATA_FILE) or {}).get(
            "weights_source"
        )
        why = (
            f" ({note.get('note')})"
            if isinstance(note, dict) and note.get("note")
            else ""
        )
        raise fetch.FetchError(
            f"Preset {args.preset!r} names no published checkpoint to download{why}. "
            "Convert a checkpoint you have with `keras-spikformer convert FILE "
            f"--preset {args.preset} --output DIR`."
        )
    converted = fetch.fetch_pretrained(directory, source, progress=not args.no_progress)
    print(f"converted preset in the cache: {converted}")
    if args.output:
        with atomic_directory(args.output, args.overwrite, owned) as tmp:
            for path in converted.iterdir():
                shutil.copy2(path, tmp / path.name)
        print(f"wrote preset {args.output}")
    return 0
