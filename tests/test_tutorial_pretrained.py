"""The pretrained-weights tutorial, run against a local server standing in for
the authors' host: a tiny Spike-driven Transformer preset whose
`weights_source` is the SDT V1 reference fixture served on 127.0.0.1."""

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import DATA
from http_fixtures import FileServer

from keras_spikformer import presets

pytestmark = [pytest.mark.backend_independent, pytest.mark.large]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILE = "sdt_v1_small.pth.tar"


def test_pretrained_weights_tutorial_downloads_once_then_uses_the_cache(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KERAS_SPIKFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KERAS_SPIKFORMER_OFFLINE", raising=False)
    preset = tmp_path / "sdt_web"
    shutil.copytree(presets.resolve("sdt_tiny_cifar"), preset)
    with FileServer({f"weights/{FILE}": (DATA / FILE).read_bytes()}) as server:
        meta = json.loads((preset / "metadata.json").read_text())
        meta["weights_source"] = {
            "url": server.url(f"weights/{FILE}"), "file_name": FILE, "sha256": None,
            "size": None, "licence": "Apache-2.0",
        }  # fmt: skip
        (preset / "metadata.json").write_text(json.dumps(meta))
        sys.path.insert(0, str(EXAMPLES))
        try:
            tutorial = importlib.import_module("pretrained_weights")
        finally:
            sys.path.remove(str(EXAMPLES))
        results = tutorial.main(["--preset", str(preset), "--top", "3"])
        assert server.gets(f"weights/{FILE}") == 1  # the second call used the cache
    assert sorted(results) == ["china.jpg", "flower.jpg"]
    for top in results.values():
        assert len(top) == 3 and all(0.0 <= p <= 1.0 for _, p in top)
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    out = capsys.readouterr().out
    assert "converted checkpoint: sha256" in out and "(from the cache)" in out
