"""XLA:CPU settings for the JAX backend, applied when the package is imported.

jaxlib 0.10's XLA:CPU compiles convolutions and dots through YNNPACK fusions by
default. For the filter gradient of the 3x3 convolutions of the patch-splitting
stem these run 4-6x slower than XLA's own convolution emitter (2-core AVX2 and
AVX-512 CPUs, see `benchmarks/README.md`), which made JAX training ~40% slower
than TensorFlow; its matrix products run about 20% slower than XLA's own
(`[8192, 384] @ [384, 1536]`: 106 vs 87 ms, 2-core AVX2). `apply()` removes
these two fusion types
(`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot`)
through the process's `XLA_FLAGS` before JAX creates its CPU client. XLA only
reads the flag for CPU compilation; GPU and TPU compilation ignore it.
"""

import os

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
VALUE = "-individual_convolution,-individual_dot"
# jaxlib versions whose XLA knows the flag (XLA aborts on an unknown flag).
_JAXLIB_VERSIONS = ((0, 10),)


def _jaxlib_version():
    try:
        from jaxlib import version
    except ImportError:
        return None
    return tuple(int(part) for part in version.__version__.split(".")[:2])


def _jax_backend_started():
    try:
        from jax._src import xla_bridge
    except ImportError:
        return False
    return bool(getattr(xla_bridge, "_backends", None))


def apply(environ=None):
    """Turns off XLA:CPU's YNNPACK convolution and dot fusions for this process.

    Applies only when Keras runs on JAX, the installed jaxlib is one whose XLA
    knows the flag, JAX has not started its backends yet (XLA reads
    `XLA_FLAGS` once), and the user's `XLA_FLAGS` does not set the flag
    already: to keep XLA's default, set it yourself, e.g.
    `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution`
    (or the empty value, all of YNNPACK's fusions off).
    Other flags in `XLA_FLAGS` are kept.

    Args:
        environ: mapping to edit. Defaults to `os.environ`.

    Returns:
        `True` when the flag was added, else `False`.

    Example:
    >>> apply()  # KERAS_BACKEND=jax, jaxlib 0.10
    True
    """
    environ = os.environ if environ is None else environ
    import keras

    flags = environ.get("XLA_FLAGS", "")
    if (
        keras.backend.backend() != "jax"
        or FLAG in flags
        or _jaxlib_version() not in _JAXLIB_VERSIONS
        or _jax_backend_started()
    ):
        return False
    environ["XLA_FLAGS"] = f"{flags} {FLAG}={VALUE}".strip()
    return True
