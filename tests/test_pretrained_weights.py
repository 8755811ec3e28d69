"""Published checkpoints on first use (`keras_spikformer.fetch`), against local servers.

A copy of the tiny SDT V1 preset (`zoo/sdt_tiny_cifar`) whose `weights_source`
points at the reference checkpoint `data/sdt_v1_small.pth.tar` on a server on
127.0.0.1 stands in for a zoo preset with published weights. No test reaches
the internet, and every test's cache is its own `tmp_path`.
"""

import hashlib
import json
import shutil
import sys
import threading

import h5py
import numpy as np
import pytest
from conftest import DATA, images_of, load_fixture
from http_fixtures import DriveServer, FileServer, route_drive_hosts
from keras import ops

import keras_spikformer as ks
from keras_spikformer import fetch, presets
from keras_spikformer.cli.main import main as cli
from keras_spikformer.convert import convert_checkpoint

CHECKPOINT = (DATA / "sdt_v1_small.pth.tar").read_bytes()
SHA256 = hashlib.sha256(CHECKPOINT).hexdigest()
FILE = "sdt_v1_small.pth.tar"
NAME = "sdt_web"  # the test preset's directory name (also its mirror folder)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SPIKFORMER_CACHE", str(tmp_path / "cache"))
    for name in (
        "KERAS_SPIKFORMER_OFFLINE",
        "HF_HUB_OFFLINE",
        "KERAS_SPIKFORMER_MIRROR",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with FileServer({f"weights/{FILE}": CHECKPOINT}) as running:
        yield running


def web_preset(tmp_path, url, **source):
    """`zoo/sdt_tiny_cifar` copied to tmp_path with a weights_source for `url`."""
    directory = tmp_path / NAME
    shutil.copytree(presets.resolve("sdt_tiny_cifar"), directory)
    meta = json.loads((directory / "metadata.json").read_text())
    meta["weights_source"] = {"url": url, "file_name": FILE, "sha256": None,
                              "size": None, "licence": "Apache-2.0", **source}  # fmt: skip
    (directory / "metadata.json").write_text(json.dumps(meta))
    return directory


def cached_files(tmp_path):
    """Files in the cache, less its lock files."""
    files = (tmp_path / "cache").rglob("*")
    return [p for p in files if p.is_file() and p.parent.name != "locks"]


def logits(model):
    npz, _ = load_fixture("sdt_v1_small")
    return ops.convert_to_numpy(model(images_of(npz), training=False)), npz["logits"]


# backend_independent: what this file tests (download, conversion, cache) is
# the same on every backend, and the SDT logits on JAX and torch are
# test_spike_driven_transformer_exactness's (a fresh SDT build there costs ~45 s).
@pytest.mark.backend_independent
def test_first_call_downloads_and_converts_second_uses_only_the_cache(server, tmp_path):
    preset = web_preset(tmp_path, server.url(f"weights/{FILE}"), sha256=SHA256)
    model = ks.SpikeDrivenTransformer.from_preset(str(preset))
    assert server.gets(f"weights/{FILE}") == 1
    assert "conversion" in model.preset_metadata
    # The reference logits of this file; converting it by hand gives them too
    # (test_spike_driven_transformer_exactness), and the same weight files
    # (test_cli_download_and_convert_url).
    ours, reference = logits(model)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)

    server.stop()
    again = ks.ImageClassifier.from_preset(str(preset))
    assert isinstance(again, ks.SpikeDrivenTransformer)
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    backbone = ks.SpikeDrivenTransformerBackbone.from_preset(str(preset))
    for a, b in zip(backbone.get_weights(), model.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert server.gets(f"weights/{FILE}") == 1


@pytest.mark.backend_independent
def test_concurrent_first_calls_download_and_convert_once(server, tmp_path):
    preset = web_preset(tmp_path, server.url(f"weights/{FILE}"))
    source = fetch.weights_source_of(preset)
    results, errors = [], []

    def first_call():
        try:
            results.append(fetch.fetch_pretrained(preset, source, progress=False))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=first_call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == 2 and results[0] == results[1]
    assert server.gets(f"weights/{FILE}") == 1


@pytest.mark.backend_independent
def test_interrupted_download_is_never_used_and_the_next_try_resumes(server, tmp_path):
    preset = web_preset(tmp_path, server.url(f"weights/{FILE}"))
    source = fetch.weights_source_of(preset)
    server.cut_at[f"weights/{FILE}"] = 300_000
    with pytest.raises(fetch.FetchError, match="interrupted 3 times") as info:
        fetch.fetch_checkpoint(NAME, source, progress=False)
    assert "keras-spikformer convert FILE --preset sdt_web" in str(info.value)
    cached = list((tmp_path / "cache").rglob(FILE))
    assert cached == [], "an interrupted download must not be used"
    with pytest.raises(fetch.FetchError):  # nothing to load: still no weights
        ks.SpikeDrivenTransformer.from_preset(str(preset))

    del server.cut_at[f"weights/{FILE}"]
    path = fetch.fetch_checkpoint(NAME, source, progress=False)
    assert path.read_bytes() == CHECKPOINT
    assert server.requests[-1][2] == "bytes=300000-", "the retry resumes the part file"
    assert sorted(p.name for p in path.parent.iterdir()) == [FILE]


@pytest.mark.backend_independent
def test_a_wrong_sha256_is_refused_and_the_file_deleted(server, tmp_path):
    preset = web_preset(tmp_path, server.url(f"weights/{FILE}"), sha256="0" * 64)
    with pytest.raises(fetch.FetchError, match="sha256 mismatch") as info:
        ks.SpikeDrivenTransformer.from_preset(str(preset))
    assert "0" * 64 in str(info.value) and SHA256 in str(info.value)
    assert cached_files(tmp_path) == []


@pytest.mark.backend_independent
def test_404_html_pages_and_unreachable_hosts_give_clear_errors(server, tmp_path):
    url = server.url("weights/missing.pth")
    with pytest.raises(fetch.FetchError, match="HTTP 404") as info:
        ks.SpikeDrivenTransformer.from_preset(str(web_preset(tmp_path, url)))
    message = str(info.value)
    assert url in message and str(tmp_path / "cache") in message
    assert "keras-spikformer convert FILE --preset sdt_web" in message

    for content_type in (
        "text/html",
        "application/octet-stream",
    ):  # header, then sniffed
        server.html.add(f"weights/{FILE}")
        server.html_type = content_type
        shutil.rmtree(tmp_path / NAME)
        preset = web_preset(tmp_path, server.url(f"weights/{FILE}"))
        with pytest.raises(fetch.FetchError, match="HTML page instead of the file"):
            ks.SpikeDrivenTransformer.from_preset(str(preset))
        assert cached_files(tmp_path) == []

    server.stop()  # a host that cannot be reached
    with pytest.raises(fetch.FetchError, match="Cannot reach") as info:
        ks.SpikeDrivenTransformer.from_preset(str(preset))
    assert server.url(f"weights/{FILE}") in str(info.value)


@pytest.mark.backend_independent
@pytest.mark.parametrize("variable", ["KERAS_SPIKFORMER_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_gives_one_error_naming_the_url(
    server, tmp_path, monkeypatch, variable
):
    url = server.url(f"weights/{FILE}")
    preset = web_preset(tmp_path, url)
    monkeypatch.setenv(variable, "1")
    with pytest.raises(fetch.FetchError, match=f"{variable}=1") as info:
        ks.SpikeDrivenTransformer.from_preset(str(preset))
    assert url in str(info.value) and str(tmp_path / "cache") in str(info.value)
    model = ks.SpikeDrivenTransformer.from_preset(str(preset), load_weights=False)
    assert "conversion" not in model.preset_metadata
    assert server.requests == [], "offline and load_weights=False reach no network"


@pytest.mark.backend_independent
def test_the_mirror_replaces_the_authors_host(server, tmp_path, monkeypatch):
    server.files[f"mirror/{NAME}/{FILE}"] = CHECKPOINT
    preset = web_preset(tmp_path, server.url("authors/gone.pth"), sha256=SHA256)
    monkeypatch.setenv("KERAS_SPIKFORMER_MIRROR", server.url("mirror/"))
    path = fetch.fetch_checkpoint(NAME, fetch.weights_source_of(preset), progress=False)
    assert path.read_bytes() == CHECKPOINT
    assert [p for _, p, _ in server.requests] == [f"/mirror/{NAME}/{FILE}"]


@pytest.mark.backend_independent
def test_a_later_download_that_differs_from_the_first_is_warned_about(server, tmp_path):
    source = fetch.weights_source_of(
        web_preset(tmp_path, server.url(f"weights/{FILE}"))
    )
    path = fetch.fetch_checkpoint(NAME, source, progress=False)
    known = json.loads((tmp_path / "cache" / "known_hashes.json").read_text())
    assert known == {source.url: SHA256}
    path.unlink()
    server.files[f"weights/{FILE}"] = CHECKPOINT + b"\0"
    with pytest.warns(UserWarning, match=f"first download had {SHA256}"):
        fetch.fetch_checkpoint(NAME, source, progress=False)


@pytest.mark.backend_independent
def test_google_drive_confirmation_page_then_the_file(tmp_path, monkeypatch):
    pytest.importorskip("gdown")
    file_id = "1AbCdEfGhIjKlMnOpQrStUvWxYz"
    with DriveServer({file_id: (FILE, CHECKPOINT)}, confirm_above=1000) as drive:
        route_drive_hosts(monkeypatch, drive)
        url = f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"
        source = fetch.weights_source_of(web_preset(tmp_path, url, sha256=SHA256))
        path = fetch.fetch_checkpoint(NAME, source, progress=False)
        assert path.read_bytes() == CHECKPOINT
        paths = [p.split("?")[0] for _, p, _ in drive.requests]
        assert paths == ["/uc", "/download"], "the confirmation page came first"

        drive.quota.add(file_id)
        path.unlink()
        with pytest.raises(fetch.FetchError, match="Too many users") as info:
            fetch.fetch_checkpoint(NAME, source, progress=False)
        assert url in str(info.value)


@pytest.mark.backend_independent
def test_without_gdown_a_drive_link_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)
    url = "https://drive.google.com/file/d/1AbCdEfGhIjKlMnOpQrStUvWxYz/view"
    source = fetch.weights_source_of(web_preset(tmp_path, url))
    with pytest.raises(fetch.FetchError, match=r"keras-spikformer\[weights\]"):
        fetch.fetch_checkpoint(NAME, source, progress=False)


def weight_arrays(directory):
    """`{file/dataset path: array}` of a preset's two weight files."""
    out = {}
    for file in ("model.weights.h5", "task.weights.h5"):
        with h5py.File(directory / file) as f:
            datasets = []
            f.visititems(lambda key, item, found=datasets: found.append(key) if isinstance(item, h5py.Dataset) else None)  # fmt: skip
            out.update({f"{file}/{key}": f[key][()] for key in datasets})
    return out


@pytest.mark.backend_independent
def test_cli_download_and_convert_url(server, tmp_path, capsys):
    preset = web_preset(tmp_path, server.url(f"weights/{FILE}"))
    assert (
        cli(
            ["download", str(preset), "--output", str(tmp_path / "dl"), "--no-progress"]
        )
        == 0
    )
    url = server.url(f"weights/{FILE}")
    assert cli(["convert", url, "--preset", "sdt_tiny_cifar",
                "--output", str(tmp_path / "conv"), "--no-progress"]) == 0  # fmt: skip
    convert_checkpoint(DATA / FILE, tmp_path / "by_hand", preset="sdt_tiny_cifar",
                       progress=False)  # fmt: skip
    expected = weight_arrays(tmp_path / "by_hand")
    for produced in ("dl", "conv"):
        got = weight_arrays(tmp_path / produced)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{produced}: {key}")
    assert cli(["download", "sdt_tiny_cifar"]) == 2
    assert "names no published checkpoint" in capsys.readouterr().err


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "field, value, complaint",
    [
        ("file_name", "../../evil.pth", "plain file name"),
        ("url", "file:///etc/passwd", "http"),
        ("sha256", "ABC", "64 lower-case hex"),
        ("size", -1, "positive"),
        ("converter_options", {"hidden_dim": 8}, "may only set"),
    ],
)
def test_a_malformed_weights_source_is_refused_naming_the_field(
    tmp_path, field, value, complaint
):
    source = {"url": "http://127.0.0.1:9/x.pth", field: value}
    preset = web_preset(tmp_path, source.pop("url"), **source)
    with pytest.raises(fetch.FetchError, match=f"weights_source.{field} .*{complaint}"):
        ks.SpikeDrivenTransformer.from_preset(str(preset))
    assert not (tmp_path / "cache").exists()


@pytest.mark.backend_independent
def test_zoo_weights_sources_are_recorded_truthfully():
    drive = {}
    for name in presets.preset_names():
        meta = presets.read_json(presets.zoo_dir() / name / "metadata.json")
        source = fetch.read_weights_source(meta, name)  # every entry parses
        if source is not None:
            drive[name] = source
            assert source.file_name and source.licence
            file_id = source.url.split("/file/d/")[1].split("/")[0]
            assert file_id in meta["weights_note"], "the id the README linked"
    sdt = {f"sdt_{v}_imagenet" for v in ("8_384", "6_512", "8_512", "10_512", "8_768")}
    assert sdt <= set(drive)
    meta_55m = presets.read_json(
        presets.zoo_dir() / "meta_spikeformer_55m_imagenet" / "metadata.json"
    )
    assert meta_55m["weights_source"]["url"] is None
    assert "folder" in meta_55m["weights_source"]["note"]
    for name in presets.preset_names():
        if name.startswith("qkformer") and "tiny" not in name:
            meta = presets.read_json(presets.zoo_dir() / name / "metadata.json")
            assert meta["weights_source"]["url"] is None
            assert "c2a00e8" in meta["weights_source"]["note"]
