"""Entry point of the `keras-spikformer` script: arguments first, Keras later.

`import keras_spikformer` imports Keras (and its backend) to register the
package's layers for `keras.saving.load_model`, which takes seconds. The
script answers `--help` and argument errors before that: it imports
`keras_spikformer.cli` (which imports nothing heavy) under a bare stand-in
for the package, parses, and lets the real package load when the command
runs. `python -m keras_spikformer.cli.main` works too, only slower to start.
"""

import importlib.util
import sys
import types


def _light_cli():
    """`keras_spikformer.cli.main`, imported without the package's __init__."""
    if "keras_spikformer" in sys.modules:  # already imported: nothing to save
        from keras_spikformer.cli import main as cli

        return cli
    spec = importlib.util.find_spec("keras_spikformer")
    stand_in = types.ModuleType("keras_spikformer")
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules["keras_spikformer"] = stand_in
    try:
        from keras_spikformer.cli import main as cli
    finally:  # the real package (and fresh submodules) load on first use
        for name in [n for n in sys.modules if n.split(".")[0] == "keras_spikformer"]:
            del sys.modules[name]
    return cli


def main(argv=None):
    """Parses and checks `argv`, then runs the command; returns the exit code."""
    cli = _light_cli()
    return cli.run(cli.build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
