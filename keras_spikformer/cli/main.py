"""`keras-spikformer COMMAND ...`: one entry point, one module per command.

Parsing imports nothing heavy: each command's `run` imports Keras and the
models it needs, so that `--help` and argument errors answer at once (the
`keras-spikformer` script starts from `keras_spikformer_cli`, which parses
before even `keras_spikformer/__init__.py` runs).
"""

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from keras_spikformer.cli import (
    analyze_command,
    convert_command,
    download_command,
    train_command,
)
from keras_spikformer.version import __version__

# name -> (add the subparser, run it)
COMMANDS = {
    "convert": (convert_command.add_parser, convert_command.run),
    "download": (download_command.add_parser, download_command.run),
    "train": (train_command.add_train_parser, train_command.run_train),
    "evaluate": (train_command.add_evaluate_parser, train_command.run_evaluate),
    "analyze": (analyze_command.add_parser, analyze_command.run),
}
INTERRUPTED = 130  # the shell's code for a command ended by SIGINT
# SIGTERM and SIGHUP end a command like Ctrl-C: the same clean-up runs (no
# half-written preset or report is left behind), exit code 128 + the signal.
CLEAN_EXIT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
    """Runs the command line; returns the exit code (2 for user errors, 130
    when interrupted)."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args):
    """Runs parsed `args`; errors of the user's input become one line."""
    try:
        with _signals_interrupt():
            return COMMANDS[args.command][1](args) or 0
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"keras-spikformer {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"keras-spikformer {args.command}: {_interrupted(args)}", file=sys.stderr)
        if isinstance(interrupt, Terminated):
            return 128 + interrupt.signum
        return INTERRUPTED


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM/SIGHUP raise `Terminated` (a KeyboardInterrupt) while the command runs."""

    def handler(signum, frame):
        raise Terminated(signum)

    previous = {}
    try:
        for signum in CLEAN_EXIT_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:  # nohup's SIG_IGN stays
                previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave the defaults
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _interrupted(args):
    if args.command != "train":
        return "interrupted"
    if (Path(args.output) / "backup").is_dir():
        return "interrupted: rerun with --resume to continue from the last saved epoch"
    return "interrupted before an epoch was saved: rerun the same command to start over"


if __name__ == "__main__":
    sys.exit(main())
