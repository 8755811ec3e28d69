"""hf:// presets: upload and download through a local stand-in for the Hub."""

import json
import sys

import h5py
import keras
import numpy as np
import pytest
from hub_server import FakeHub  # tests/ is on sys.path

from keras_spikformer import hub, presets
from keras_spikformer.presets import PresetError

HANDLE = "hf://someone/tiny_preset"
REPO = "someone/tiny_preset"
BACKBONE = {
    "module": "keras_spikformer.models.spikformer.spikformer_backbone",
    "class_name": "SpikformerBackbone",
    "config": {"image_shape": [16, 16, 1], "patch_size": 4},
    "registered_name": "keras_spikformer>SpikformerBackbone",
}


def write_preset(directory, weights=True):
    """A small preset directory, written by hand (enough for the transport)."""
    directory.mkdir(parents=True)
    files = {
        presets.CONFIG_FILE: json.dumps(BACKBONE),
        presets.METADATA_FILE: json.dumps({"keras_version": "3"}),
        presets.RECIPE_FILE: json.dumps({"optimizer": "adamw"}),
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    if weights:  # a real HDF5 file: the pre-upload check inspects its structure
        with h5py.File(directory / presets.WEIGHTS_FILE, "w") as f:
            f.create_dataset("layers/dense/vars/0", data=np.arange(16, dtype="float32"))
    return directory


def preset_files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A running FakeHub with the Hub's endpoint, cache and token pointed at it."""
    constants = pytest.importorskip("huggingface_hub.constants")
    with FakeHub() as server:
        use_cache(monkeypatch, tmp_path / "hf")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        # Values read at import: keep the library on the test's side too.
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True, raising=False)
        monkeypatch.setattr(
            constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            server.url + "/{repo_id}/resolve/{revision}/{filename}",
        )
        yield server


def use_cache(monkeypatch, home):
    """Points the Hugging Face cache (env and import-time constants) at `home`."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    for name, file in (
        ("HF_TOKEN_PATH", "token"),
        ("HF_STORED_TOKENS_PATH", "stored_tokens"),
    ):
        monkeypatch.setattr(constants, name, str(home / file), raising=False)


@pytest.mark.backend_independent
def test_upload_then_download(fake_hub, tmp_path):
    source = write_preset(tmp_path / "preset")
    (source / "training_log.txt").write_text("not part of the preset")

    url = hub.upload_preset(HANDLE, source)

    assert url.endswith(REPO)
    stored = fake_hub.repos[REPO]["files"]
    assert set(stored) == set(preset_files(source)) - {"training_log.txt"}
    path = presets.resolve(HANDLE)
    assert path.is_relative_to(tmp_path / "hf" / "hub")
    assert preset_files(path) == {k: v for k, v in stored.items()}
    # A second upload of a changed preset updates the repository.
    (source / presets.RECIPE_FILE).write_text(json.dumps({"optimizer": "sgd"}))
    hub.upload_preset(HANDLE, source)
    assert json.loads(fake_hub.repos[REPO]["files"][presets.RECIPE_FILE]) == {
        "optimizer": "sgd"
    }


@pytest.mark.backend_independent
def test_cache_hit_and_offline(fake_hub, tmp_path, monkeypatch):
    fake_hub.put(REPO, preset_files(write_preset(tmp_path / "preset")))
    first = hub.download_preset(HANDLE)
    assert len(fake_hub.file_requests()) > 0
    fake_hub.requests.clear()

    assert hub.download_preset(HANDLE) == first
    assert fake_hub.file_requests() == []  # only the revision was checked
    fake_hub.requests.clear()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.download_preset(HANDLE) == first
    assert hub.download_preset(f"{HANDLE}@{first.name}") == first  # a commit
    assert fake_hub.requests == []  # offline: no request at all

    use_cache(monkeypatch, tmp_path / "empty_cache")
    with pytest.raises(PresetError, match=f"{HANDLE} is not .*HF_HUB_OFFLINE is set"):
        hub.download_preset(HANDLE)
    assert fake_hub.requests == []


@pytest.mark.backend_independent
def test_revision(fake_hub, tmp_path):
    fake_hub.put(REPO, preset_files(write_preset(tmp_path / "preset")))
    sha = fake_hub.repos[REPO]["sha"]
    assert hub.download_preset(f"{HANDLE}@{sha}").name == sha
    with pytest.raises(PresetError, match="has no revision 'v9'"):
        hub.download_preset(f"{HANDLE}@v9")


@pytest.mark.backend_independent
def test_missing_file_and_missing_repo(fake_hub, tmp_path):
    fake_hub.put(REPO, preset_files(write_preset(tmp_path / "preset")))
    fake_hub.broken.add((REPO, presets.WEIGHTS_FILE))
    with pytest.raises(
        PresetError,
        match=f"{HANDLE}: model.weights.h5 is listed .* upload the preset again",
    ):
        hub.download_preset(HANDLE)
    with pytest.raises(PresetError, match="hf://someone/absent: no such repository"):
        presets.resolve("hf://someone/absent")


@pytest.mark.backend_independent
def test_repo_that_is_not_a_preset(fake_hub):
    fake_hub.put(REPO, {"README.md": b"# weights", presets.WEIGHTS_FILE: b"\0" * 64})
    with pytest.raises(PresetError, match=f"{REPO} has no config.json"):
        hub.download_preset(HANDLE)
    foreign = {"class_name": "ViTBackbone", "registered_name": "keras_hub>ViTBackbone"}
    fake_hub.put(
        "other/vit",
        {"config.json": json.dumps(foreign).encode(), presets.WEIGHTS_FILE: b"\0" * 64},
    )
    with pytest.raises(PresetError, match="describes 'keras_hub>ViTBackbone'"):
        hub.download_preset("hf://other/vit")
    # The check comes first: no weights were downloaded from either repository.
    assert not [r for r in fake_hub.file_requests() if r[1].endswith(".h5")]


@pytest.mark.backend_independent
def test_unreachable_hub(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(PresetError, match="could not be reached .*HF_HUB_OFFLINE=1"):
        hub.download_preset(HANDLE)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "handle", ["kaggle://keras/spikformer", "gs://bucket/p", "s3://b/p"]
)
def test_unsupported_schemes(handle):
    with pytest.raises(PresetError, match=r"scheme is not supported.*hf://owner/name"):
        presets.resolve(handle)


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "handle", ["hf://owner", "hf://a/b/c", "hf://a/b@", "hf://a b/c"]
)
def test_malformed_handles(handle):
    with pytest.raises(PresetError, match="not a valid Hugging Face handle"):
        hub.download_preset(handle)


@pytest.mark.backend_independent
def test_without_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    for call in (
        lambda: presets.resolve(HANDLE),
        lambda: hub.upload_preset(HANDLE, write_preset(tmp_path / "preset")),
    ):
        with pytest.raises(
            ImportError, match=r'pip install "keras-spikformer\[hub\]"'
        ) as e:
            call()
        assert isinstance(
            e.value, PresetError
        )  # the CLI reports it like other preset errors


@pytest.mark.backend_independent
def test_upload_checks_the_directory_first(fake_hub, tmp_path):
    source = write_preset(tmp_path / "preset")
    (source / presets.METADATA_FILE).unlink()
    with pytest.raises(PresetError, match="metadata.json missing"):
        hub.upload_preset(HANDLE, source)
    (source / presets.METADATA_FILE).write_text("{not json")
    with pytest.raises(PresetError, match="metadata.json is corrupt"):
        hub.upload_preset(HANDLE, source)
    (source / presets.METADATA_FILE).write_text("{}")
    (source / presets.WEIGHTS_FILE).write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(PresetError, match="model.weights.h5 is corrupt"):
        hub.upload_preset(HANDLE, source)
    (source / presets.CONFIG_FILE).write_text(
        json.dumps({"class_name": "BertModel", "config": {}})
    )
    with pytest.raises(PresetError, match="not a keras-spikformer preset"):
        hub.upload_preset(HANDLE, source)
    with pytest.raises(PresetError, match="is not a directory"):
        hub.upload_preset(HANDLE, tmp_path / "nowhere")
    with pytest.raises(PresetError, match="drop '@v1'"):
        hub.upload_preset(HANDLE + "@v1", source)
    assert fake_hub.requests == []  # nothing reached the network


def test_from_preset_round_trip(fake_hub, tmp_path):
    import keras_spikformer

    model = keras_spikformer.Spikformer.from_preset(
        "spikformer_tiny_digits", load_weights=False
    )
    model.save_to_preset(tmp_path / "preset")
    keras_spikformer.upload_preset(HANDLE, tmp_path / "preset")

    loaded = keras_spikformer.Spikformer.from_preset(HANDLE)

    for a, b in zip(model.weights, loaded.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert loaded.preprocessor.get_config() == model.preprocessor.get_config()
    images = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images)),
        keras.ops.convert_to_numpy(model(images)),
        atol=1e-6,
    )
