"""The `keras-spikformer` command line."""
