import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.large
@pytest.mark.backend_independent
def test_digits_quickstart_runs_end_to_end(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import digits_quickstart
    finally:
        sys.path.pop(0)
    accuracy = digits_quickstart.main(
        ["--epochs", "5", "--limit", "800", "--output", str(tmp_path)]
    )
    # Measured 0.53 (TensorFlow, 5 epochs on 640 images); chance is 0.10.
    assert accuracy > 0.35
    assert (tmp_path / "model.keras").is_file()
    assert "identical predictions: True" in capsys.readouterr().out


@pytest.mark.large
@pytest.mark.backend_independent
def test_zoo_ships_inside_the_wheel(tmp_path):
    """`from_preset` works from an installed (non-editable) wheel, outside the source tree."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("keras_spikformer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "keras_spikformer/zoo/spikformer_8_768_imagenet/config.json" in names
    assert "keras_spikformer/data/cifar10dvs_split.json" in names  # the fixed split
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    script = (
        "import keras_spikformer as ks, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "print(ks.__file__)\n"
        "print(len(ks.Spikformer.presets))\n"
        "m = ks.Spikformer.from_preset('spikformer_tiny_cifar')\n"
        "print(m.output.shape[-1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0].startswith(str(site))
    assert int(out[1]) >= 15 and out[2] == "10"


def test_throughput_benchmark_writes_its_record(tmp_path):
    """`benchmarks/throughput.py` runs and writes the documented JSON fields."""
    import json

    import keras

    record_path = tmp_path / "record.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "throughput.py"),
            "--preset",
            "spikformer_tiny_digits",
            "--backend",
            keras.backend.backend(),
            "--mode",
            "train",
            "--batch-size",
            "4",
            "--steps",
            "2",
            "--warmup",
            "0",
            "--json",
            str(record_path),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend()},
    )
    record = json.loads(record_path.read_text())
    assert record["preset"] == "spikformer_tiny_digits"
    assert record["mode"] == "train" and record["batch_size"] == 4
    assert record["backend"] == keras.backend.backend()
    assert record["dtype"] == "float32" and len(record["step_seconds"]) == 2
    assert record["images_per_second"] > 0 and record["peak_rss_mb"] > 0
    assert record["compile_seconds"] > 0


def test_models_run_without_tensorflow_on_jax():
    """Model code works where TensorFlow is not installed (a JAX-only GPU machine)."""
    pytest.importorskip("jax")
    code = (
        "import sys, importlib.abc, numpy as np\n"
        "class NoTensorFlow(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):\n"
        "            raise ImportError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        "from keras_spikformer import Spikformer\n"
        "model = Spikformer.from_preset('spikformer_tiny_digits')\n"
        "logits = model.predict(np.zeros((2, 16, 16, 1), 'float32'), verbose=0)\n"
        "print(logits.shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(2, 10)"
