"""Export for serving: TF SavedModel and ONNX reproduce the Keras logits."""

import re
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import hide_package, images_of
from test_reference_exactness import fixture_model

from keras_spikformer import Spikformer

README = Path(__file__).resolve().parents[1] / "README.md"

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="SavedModel and tf2onnx export are checked on the TensorFlow backend",
)


def readme_serving_example():
    """The code block of the README's "Export and serving" section."""
    text = README.read_text()
    section = text.split("## Export and serving", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section should hold one serving example"
    return blocks[0]


def digits(count=16):
    from sklearn.datasets import load_digits

    images = load_digits().images[:count, ..., None]
    return np.round(images * (255.0 / 16.0)).astype("uint8")


@pytest.mark.large
@tensorflow_only
def test_readme_serving_example_matches_keras(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    monkeypatch.chdir(tmp_path)
    uint8_images = digits()
    namespace = {"uint8_images": uint8_images}
    exec(compile(readme_serving_example(), "README.md", "exec"), namespace)
    expected = namespace["model"].predict(uint8_images, verbose=0)
    assert (tmp_path / "digits_saved_model" / "saved_model.pb").exists()
    for name in ("saved_model_logits", "onnx_logits"):
        logits = np.asarray(namespace[name])
        assert logits.shape == expected.shape == (16, 10), name
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4, err_msg=name)


@pytest.mark.large
@tensorflow_only
def test_fused_onnx_export_gives_the_reference_logits(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model, npz = fixture_model("cifar10_small")
    path = tmp_path / "fused.onnx"
    model.export(str(path), format="onnx", fused=True)
    session = ort.InferenceSession(str(path))
    images = images_of(npz).astype("float32")
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch.onnx path")
def test_torch_onnx_export_with_a_fixed_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, npz = fixture_model("cifar10_small")
    path = tmp_path / "fused.onnx"
    with pytest.raises(ValueError, match="batch_size=N"):
        model.export(str(path), format="onnx")
    model.export(str(path), format="onnx", fused=True, batch_size=2)
    session = ort.InferenceSession(str(path))
    images = images_of(npz).astype("float32")
    logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax2tf path")
def test_jax_saved_model_export(tmp_path):
    import tensorflow as tf

    model, npz = fixture_model("cifar10_small")
    model.export(str(tmp_path / "saved_model"), fused=True)
    reloaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    logits = reloaded.serve(tf.constant(images_of(npz), "float32")).numpy()
    np.testing.assert_allclose(logits, npz["logits"], rtol=0, atol=1e-4)


def test_missing_export_packages_are_named(monkeypatch, tmp_path):
    model = Spikformer.from_preset(
        "spikformer_tiny_digits", load_weights=False, preprocessor=None
    )
    hide_package(monkeypatch, "onnx")
    with pytest.raises(ImportError, match=r"needs onnx.*pip install onnx"):
        model.export(str(tmp_path / "m.onnx"), format="onnx")
