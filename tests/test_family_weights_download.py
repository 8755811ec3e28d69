"""The zoo's published checkpoints of the new families fetch through the mirror.

Each ImageNet preset of Max-Former, MS-QKFormer and E-SpikeFormer records a
`weights_source` (GitHub Releases assets, Google Drive ids). Here a tiny
preset of the same family carries the real preset's `weights_source`, and
`KERAS_SPIKFORMER_MIRROR` points at a local server holding the family's
reference fixture under that preset's file name: `from_preset` downloads it,
converts it with the family's converter and gives the same weights as the
file converted by hand. Nothing reaches the authors' hosts.
"""

import json
import shutil

import numpy as np
import pytest
from conftest import DATA
from http_fixtures import FileServer

import keras_spikformer as ks
from keras_spikformer import fetch, presets
from keras_spikformer.convert import convert_checkpoint

pytestmark = pytest.mark.backend_independent

# (zoo preset with a published checkpoint, tiny preset of its family, fixture)
CASES = [
    ("maxformer_10_384_imagenet", "maxformer_tiny_imagenet", "maxformer_small.pth"),
    (
        "e_spikeformer_10m_imagenet",
        "e_spikeformer_tiny_imagenet",
        "sdt_v3_base_small.pth",
    ),
    # converter_options: the Large checkpoints hold head_kd (distillation_head)
    (
        "e_spikeformer_83m_1x4_imagenet",
        "e_spikeformer_large_tiny_imagenet",
        "sdt_v3_large_small.pth",
    ),
]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SPIKFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KERAS_SPIKFORMER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_every_published_source_parses_and_names_its_file():
    published = {}
    for name in presets.preset_names():
        meta = presets.read_json(presets.zoo_dir() / name / "metadata.json")
        source = fetch.read_weights_source(meta, name)
        if source is not None:
            published[name] = source
    for family in ("maxformer_10_", "ms_qkformer_10_", "e_spikeformer_", "sdt_"):
        names = [n for n in published if n.startswith(family)]
        assert names, f"no {family}* preset records a checkpoint"
    for name, source in published.items():
        assert source.url.startswith("https://") and source.file_name, name
        if name.startswith(("maxformer", "ms_qkformer")):
            assert source.url.startswith(
                "https://github.com/bic-L/MaxFormer/releases/download/"
            ), name


@pytest.mark.parametrize("published, tiny, fixture", CASES)
def test_from_preset_fetches_a_family_checkpoint_through_the_mirror(
    tmp_path, monkeypatch, published, tiny, fixture
):
    meta = presets.read_json(presets.zoo_dir() / published / "metadata.json")
    source = meta["weights_source"]
    directory = tmp_path / published  # the mirror path uses the preset's name
    shutil.copytree(presets.zoo_dir() / tiny, directory)
    tiny_meta = json.loads((directory / "metadata.json").read_text())
    tiny_meta["weights_source"] = source
    (directory / "metadata.json").write_text(json.dumps(tiny_meta))
    data = (DATA / fixture).read_bytes()
    with FileServer({f"mirror/{published}/{source['file_name']}": data}) as server:
        monkeypatch.setenv("KERAS_SPIKFORMER_MIRROR", server.url("mirror"))
        model = ks.ImageClassifier.from_preset(str(directory))
        assert server.gets(f"mirror/{published}/{source['file_name']}") == 1
    assert "conversion" in model.preset_metadata
    by_hand = tmp_path / "by_hand"
    options = source.get("converter_options") or {}
    convert_checkpoint(DATA / fixture, by_hand, preset=tiny, progress=False, **options)
    expected = ks.ImageClassifier.from_preset(str(by_hand))
    for a, b in zip(model.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
