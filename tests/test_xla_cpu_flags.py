"""The XLA:CPU flag set for JAX on import: when it applies, and that XLA accepts it."""

import os
import subprocess
import sys

import keras
import pytest

from keras_spikformer import xla_cpu_flags

FLAG = f"{xla_cpu_flags.FLAG}={xla_cpu_flags.VALUE}"


@pytest.fixture
def jax_not_started(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(xla_cpu_flags, "_jaxlib_version", lambda: (0, 10))
    monkeypatch.setattr(xla_cpu_flags, "_jax_backend_started", lambda: False)


@pytest.mark.backend_independent
def test_flag_is_added_beside_the_users_other_flags(jax_not_started):
    environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert xla_cpu_flags.apply(environ)
    assert environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {FLAG}"
    environ = {}
    assert xla_cpu_flags.apply(environ)
    assert environ["XLA_FLAGS"] == FLAG


@pytest.mark.backend_independent
def test_flag_is_left_alone_where_it_does_not_apply(jax_not_started, monkeypatch):
    own = f"{xla_cpu_flags.FLAG}=+individual_convolution"
    environ = {"XLA_FLAGS": own}
    assert not xla_cpu_flags.apply(environ)  # the user's own setting wins
    assert environ == {"XLA_FLAGS": own}
    monkeypatch.setattr(xla_cpu_flags, "_jaxlib_version", lambda: (0, 11))
    environ = {}
    assert not xla_cpu_flags.apply(environ)  # an XLA that may not know it
    assert environ == {}
    monkeypatch.setattr(xla_cpu_flags, "_jaxlib_version", lambda: (0, 10))
    monkeypatch.setattr(xla_cpu_flags, "_jax_backend_started", lambda: True)
    assert not xla_cpu_flags.apply(environ)  # too late: XLA read its flags
    monkeypatch.setattr(xla_cpu_flags, "_jax_backend_started", lambda: False)
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    assert not xla_cpu_flags.apply(environ)  # TensorFlow's XLA is left alone
    assert environ == {}


@pytest.mark.backend_independent
def test_importing_the_package_on_jax_sets_a_flag_xla_accepts():
    # A fresh process: JAX reads XLA_FLAGS when it starts its CPU client, and
    # aborts on a flag its XLA does not know.
    code = (
        "import os, keras_spikformer, jax.numpy as jnp;"
        "print(os.environ.get('XLA_FLAGS', ''));"
        "print(float((jnp.ones((2, 3)) @ jnp.ones(3)).sum()))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["KERAS_BACKEND"] = "jax"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    flags, total = result.stdout.strip().splitlines()[-2:]
    if xla_cpu_flags._jaxlib_version() in xla_cpu_flags._JAXLIB_VERSIONS:
        assert flags == FLAG
    else:
        assert flags == ""
    assert total == "6.0"
