import json
import os
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
# The reference fixtures (ZK-Zhou/spikformer run with fixed seeds) and the
# zoo presets that share their configuration.
FIXTURE_PRESETS = {
    "cifar10_small": "spikformer_tiny_cifar",
    "imagenet_small": "spikformer_tiny_imagenet",
}


def pytest_configure(config):
    # Tests never reach the internet: a preset whose weights are published
    # (`weights_source`) would otherwise be fetched on first use. The download
    # tests unset this and serve the files from 127.0.0.1; the cache is a fresh
    # folder, never the user's ~/.cache.
    os.environ.setdefault("KERAS_SPIKFORMER_OFFLINE", "1")
    os.environ.setdefault(
        "KERAS_SPIKFORMER_CACHE", tempfile.mkdtemp(prefix="keras_spikformer_cache-")
    )


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


def load_fixture(name):
    """Returns `(npz, config)` of a reference fixture."""
    npz = np.load(DATA / f"{name}.npz")
    return npz, json.loads(str(npz["config_json"]))


def state_dict_of(npz):
    return {k[len("sd/") :]: npz[k] for k in npz.files if k.startswith("sd/")}


def images_of(npz):
    """The fixture's NCHW input batch as NHWC."""
    return npz["input"].transpose(0, 2, 3, 1)


def hide_package(monkeypatch, name):
    """Makes `importlib.util.find_spec(name)` answer `None`: the package looks
    uninstalled to code that checks before importing (e.g. export's extras)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda package, *args: None if package == name else find_spec(package, *args),
    )
