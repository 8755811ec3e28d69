"""`keras-spikformer COMMAND ...`: one entry point, one module per command."""

import argparse
import sys

from keras_spikformer.cli import analyze_command, convert_command, train_command
from keras_spikformer.version import __version__

# name -> (add the subparser, run it)
COMMANDS = {
    "convert": (convert_command.add_parser, convert_command.run),
    "train": (train_command.add_train_parser, train_command.run_train),
    "evaluate": (train_command.add_evaluate_parser, train_command.run_evaluate),
    "analyze": (analyze_command.add_parser, analyze_command.run),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-spikformer",
        description="Spikformer for Keras 3: convert reference checkpoints, train, "
        "evaluate, analyse spikes and energy.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (add_parser, _) in COMMANDS.items():
        add_parser(subparsers, name)
    return parser


def main(argv=None):
    """Runs the command line; returns the exit code (2 for user errors)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args) or 0
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"keras-spikformer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
