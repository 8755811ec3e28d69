"""Public datasets on first use (issue 24, items 7-9), with local stand-in hosts.

CI has no internet: a TFDS builder whose download goes through a local HTTP
server on 127.0.0.1 is prepared by TFDS's real `download_and_prepare`, and
DVS archives in the published layouts (made with `testing.synthetic_events`)
are served locally; both are trained for one epoch. The servers stop by
themselves (`http_fixtures.FileServer`).
"""

import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from http_fixtures import FileServer

from keras_spikformer.data import cifar10dvs_split, dvs_downloads, safe_extract
from keras_spikformer.data.events import (
    CIFAR10DVS_CLASS_NAMES,
    DVSGESTURE_CLASS_NAMES,
)
from keras_spikformer.data.registry import load_dataset
from keras_spikformer.fetch import settings
from keras_spikformer.testing.synthetic_events import (
    synthetic_events,
    write_synthetic_cifar10dvs,
    write_synthetic_dvsgesture,
)
from keras_spikformer.training.trainer import train

pytestmark = pytest.mark.backend_independent  # downloads do not use the backend


class KsTinyCifarDownload(tfds.core.GeneratorBasedBuilder):
    """A CIFAR-like builder: one .tar.gz of train/test arrays from `URL`."""

    VERSION = tfds.core.Version("1.0.0")
    URL = None  # set by the test to the local server

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        folder = dl_manager.download_and_extract(self.URL)
        return {
            s: self._generate_examples(folder / f"{s}.npz") for s in ("train", "test")
        }

    def _generate_examples(self, path):
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": image, "label": int(label)}


def _tiny_cifar_archive(num_train=32, num_test=16):
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for split, n in (("train", num_train), ("test", num_test)):
            labels = np.arange(n) % 10
            images = rng.integers(0, 40, (n, 32, 32, 3), dtype=np.uint8)
            images[np.arange(n), labels * 3, :, :] = 255  # one bright row per class
            arrays = io.BytesIO()
            np.savez(arrays, images=images, labels=labels)
            info = tarfile.TarInfo(f"{split}.npz")
            info.size = arrays.getbuffer().nbytes
            arrays.seek(0)
            tar.addfile(info, arrays)
    return out.getvalue()


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Cache and TFDS data dirs in tmp_path; online, no mirror."""
    monkeypatch.setenv("KERAS_SPIKFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    for name in (*settings.OFFLINE_ENVS, settings.MIRROR_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_a_tfds_dataset_is_downloaded_prepared_trained_then_read_offline(
    dirs, monkeypatch
):
    name = "ks_tiny_cifar_download"
    with FileServer({"c/tiny.tar.gz": _tiny_cifar_archive()}) as server:
        monkeypatch.setattr(KsTinyCifarDownload, "URL", server.url("c/tiny.tar.gz"))
        monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
        with pytest.raises(FileNotFoundError, match="KERAS_SPIKFORMER_OFFLINE=1"):
            load_dataset(name, None, (32, 32, 3))
        assert server.requests == []  # offline: nothing reached the network

        monkeypatch.delenv("KERAS_SPIKFORMER_OFFLINE")
        metrics = train(
            "spikformer_tiny_cifar", name, dirs / "run",  # --data-dir: TFDS's default
            epochs=1, batch_size=16, verbose=0,
        )  # fmt: skip
        assert server.gets("c/tiny.tar.gz") == 1
    assert (metrics["num_train"], metrics["num_test"]) == (32, 16)
    assert np.isfinite(metrics["test_loss"])
    assert (dirs / "tfds" / name / "1.0.0").is_dir()  # prepared in TFDS_DATA_DIR

    # Server gone and offline: the prepared dataset is read as it is.
    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
    data = load_dataset(name, str(dirs / "tfds"), (32, 32, 3))
    assert (data.num_train, data.num_test) == (32, 16)


def _cifar10_binary_archive():
    """CIFAR-10's published layout: cifar-10-batches-bin/*.bin (label + 3072 bytes)."""
    rng = np.random.default_rng(0)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    files = {f"data_batch_{i}.bin": 4 for i in range(1, 6)} | {"test_batch.bin": 10}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, n in files.items():
            rows = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
            rows[:, 0] = np.arange(n) % 10
            data = rows.tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        meta = "\n".join(names).encode()
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return out.getvalue()


def test_tfds_own_cifar10_builder_downloads_from_a_stand_in_host(dirs, monkeypatch):
    # TFDS imports it while preparing its own builders (a dependency of ours).
    pytest.importorskip("importlib_resources")
    from tensorflow_datasets.image_classification import cifar

    real = cifar.Cifar10._cifar_info.fget
    with FileServer(
        {"kriz/cifar-10-binary.tar.gz": _cifar10_binary_archive()}
    ) as server:
        url = server.url("kriz/cifar-10-binary.tar.gz")
        monkeypatch.setattr(
            cifar.Cifar10, "_cifar_info", property(lambda b: real(b)._replace(url=url))
        )
        data = load_dataset("cifar10", None, (32, 32, 3))
        assert server.gets("kriz/cifar-10-binary.tar.gz") == 1
    assert (data.num_train, data.num_test) == (20, 10)
    assert data.class_names[:2] == ["airplane", "automobile"]
    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
    assert load_dataset("cifar10", None, (32, 32, 3)).num_test == 10


def test_a_misspelt_tfds_name_gets_a_short_clear_error(dirs):
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cifar_10_typo", None, (32, 32, 3))
    message = str(error.value)
    assert "'cifar_10_typo' is neither a TFDS dataset" in message
    assert "Did you mean" in message and len(message) < 600


def test_local_data_keep_working_offline_and_split_seed_is_checked(
    dirs, monkeypatch, capsys
):
    from keras_spikformer.cli.main import main as cli

    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
    assert load_dataset("digits", None, (16, 16, 1)).num_train == 1437
    args = ["train", "--preset", "spikformer_tiny_digits", "--dataset", "digits"]
    args += ["--split-seed", "3", "--output", str(dirs / "run")]
    assert cli(args) == 2  # refused before any training
    assert "--split-seed only applies to cifar10dvs" in capsys.readouterr().err
    assert not (dirs / "run" / "metrics.json").exists()


def test_imagenet2012_is_never_downloaded(dirs):
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("imagenet2012", str(dirs / "tfds"), (224, 224, 3))
    message = str(error.value)
    for part in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        assert part in message
    assert str(dirs / "tfds" / "manual") in message


def _zip_class_folders(root):
    """The ten published class zips: `<class>.zip` holding `<class>/*.aedat`."""
    files = {}
    for c in CIFAR10DVS_CLASS_NAMES:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for f in sorted((root / c).iterdir()):
                z.write(f, f"{c}/{f.name}")
        files[f"c10/{c}.zip"] = out.getvalue()
    return files


def _local_archives(server, files):
    return tuple(
        dvs_downloads.Archive(
            path.rsplit("/", 1)[1], server.url(path),
            hashlib.md5(data).hexdigest(), 2**26, 100,
        )
        for path, data in files.items()
    )  # fmt: skip


def test_cifar10dvs_archives_are_downloaded_verified_and_trained(dirs, monkeypatch):
    src = dirs / "published"
    write_synthetic_cifar10dvs(src, num_per_class=10, num_events=64)
    files = _zip_class_folders(src)
    with FileServer(files) as server:
        archives = _local_archives(server, files)
        wrong = (archives[0]._replace(md5="0" * 32),)
        monkeypatch.setitem(dvs_downloads.ARCHIVES, "cifar10dvs", wrong)
        with pytest.raises(ValueError, match=f"MD5 mismatch .*{'0' * 32}"):
            load_dataset("cifar10dvs", None, (64, 64, 2))
        downloads = dirs / "cache" / "datasets" / "cifar10dvs" / "downloads"
        assert not (downloads / "airplane.zip").exists()  # deleted, never used

        monkeypatch.setitem(dvs_downloads.ARCHIVES, "cifar10dvs", archives)
        metrics = train(
            "spikformer_tiny_dvs", "cifar10dvs", dirs / "run",  # default --data-dir
            cache_dir=dirs / "frames", epochs=1, batch_size=8, verbose=0,
        )  # fmt: skip
        assert all(server.gets(p) == 1 for p in files if "airplane" not in p)
    assert (metrics["num_train"], metrics["num_test"]) == (90, 10)
    assert np.isfinite(metrics["test_loss"])

    # Server gone and offline: the extracted recordings and frame cache serve.
    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
    data = load_dataset("cifar10dvs", None, (64, 64, 2), 4, dirs / "frames")
    assert (data.num_train, data.num_test) == (90, 10)


def _tonic_gesture_archives(folder):
    """tonic's published layout: ibmGesture{Train,Test}/<recording>/<label>.npy."""
    rng = np.random.default_rng(0)
    archives = {}
    for split, users in (("Train", (1, 2)), ("Test", (3,))):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for user in users:
                for label in range(11):
                    ev = synthetic_events(label, 11, 32, rng=rng)
                    rows = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] / 1000.0], 1)
                    data = io.BytesIO()
                    np.save(data, rows.astype(np.float64))
                    name = f"ibmGesture{split}/user{user:02d}_led/{label}.npy"
                    info = tarfile.TarInfo(name)
                    info.size = data.getbuffer().nbytes
                    data.seek(0)
                    tar.addfile(info, data)
        archives[f"{folder}/ibmGesture{split}.tar.gz"] = out.getvalue()
    return archives


def test_dvsgesture_downloads_tonics_copy_through_the_mirror(dirs, monkeypatch):
    files = _tonic_gesture_archives("m/dvsgesture")
    local = tuple(
        a._replace(md5=hashlib.md5(files[f"m/dvsgesture/{a.file_name}"]).hexdigest())
        for a in dvs_downloads.ARCHIVES["dvsgesture"]
    )
    monkeypatch.setitem(dvs_downloads.ARCHIVES, "dvsgesture", local)
    with FileServer(files) as server:
        monkeypatch.setenv("KERAS_SPIKFORMER_MIRROR", server.url("m"))
        monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
        with pytest.raises(FileNotFoundError, match="OFFLINE=1 forbids downloading"):
            load_dataset("dvsgesture", None, (64, 64, 2))
        assert server.requests == []
        monkeypatch.delenv("KERAS_SPIKFORMER_OFFLINE")
        data = load_dataset("dvsgesture", None, (64, 64, 2), 4, dirs / "frames")
        assert all(server.gets(p) == 1 for p in files)  # the mirror, not figshare
    assert (data.num_train, data.num_test) == (22, 11)  # users 1-2 train, 3 test
    assert data.class_names == list(DVSGESTURE_CLASS_NAMES)
    frames, label = next(iter(data.test))
    assert frames.shape == (4, 64, 64, 2) and int(label) == 0
    assert float(frames.numpy().sum()) == 32  # every event in a frame


def test_ibms_archive_put_by_hand_is_checked_and_used(dirs, monkeypatch):
    write_synthetic_dvsgesture(dirs / "published" / "DvsGesture", num_events=16)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(dirs / "published" / "DvsGesture", "DvsGesture")
    ibm = dvs_downloads.IBM_GESTURE
    monkeypatch.setattr(
        dvs_downloads,
        "IBM_GESTURE",
        ibm._replace(md5=hashlib.md5(out.getvalue()).hexdigest()),
    )
    downloads = dirs / "cache" / "datasets" / "dvsgesture" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "DvsGesture.tar.gz").write_bytes(out.getvalue())
    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")  # nothing to download
    data = load_dataset("dvsgesture", None, (64, 64, 2), 4, dirs / "frames")
    # 2 train users x 2 lightings x 11 gestures; 1 test user (trial lists).
    assert (data.num_train, data.num_test) == (44, 22)
    assert (downloads / "DvsGesture.tar.gz.extracted").is_file()


def _zip_with(name, data=b"x", symlink=False):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        z.writestr(info, data)
    return out.getvalue()


@pytest.mark.parametrize(
    "entry, kwargs, error",
    [
        ("../outside.aedat", {}, "leaves the target"),
        ("/abs/outside.aedat", {}, "leaves the target"),
        ("airplane/link", {"symlink": True}, "link or special file"),
        ("airplane/big.aedat", {"data": b"x" * 5000}, "expands to more than"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, entry, kwargs, error):
    archive = tmp_path / "downloads" / "a.zip"
    archive.parent.mkdir()
    archive.write_bytes(_zip_with(entry, **kwargs))
    target = tmp_path / "root"
    with pytest.raises(safe_extract.UnsafeArchiveError, match=error):
        safe_extract.extract_archive(archive, target, max_bytes=4096, max_members=10)
    assert not (tmp_path / "outside.aedat").exists()
    assert not any(p.is_symlink() for p in target.rglob("*"))


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("DvsGesture/user01.aedat")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(safe_extract.UnsafeArchiveError, match="link"):
        safe_extract.extract_archive(archive, tmp_path / "root", 2**20, 10)


def test_the_shipped_cifar10dvs_split_is_the_seeded_one_and_split_seed_changes_it(
    tmp_path,
):
    cifar10dvs_split.write_split_file(tmp_path / "again.json")
    assert (
        tmp_path / "again.json"
    ).read_text() == cifar10dvs_split.SPLIT_FILE.read_text()
    orders = json.loads(cifar10dvs_split.SPLIT_FILE.read_text())["orders"]
    names = cifar10dvs_split.published_names("cat")
    shipped = cifar10dvs_split.file_order()("cat", names)
    assert shipped == [f"cifar10_cat_{i}.aedat" for i in orders["cat"]]
    assert sorted(shipped) == sorted(names)
    test_files = set(shipped[900:])  # 90% train, the rest test
    assert len(test_files) == 100 and orders["cat"] != orders["dog"]
    seeded = cifar10dvs_split.file_order(1)("cat", names)
    assert set(seeded[900:]) != test_files
    assert seeded == cifar10dvs_split.file_order(1)("cat", names)  # fixed by the seed
    # A subset (or extra files) keeps the shipped order of the files present.
    some = names[:10] + ["cifar10_cat_extra.aedat"]
    ordered = cifar10dvs_split.file_order()("cat", some)
    assert ordered[-1] == "cifar10_cat_extra.aedat"
    assert ordered[:-1] == [n for n in shipped if n in set(names[:10])]


@pytest.mark.parametrize(
    "array, error",
    [
        (np.array([{"x": 1}], dtype=object), "not a plain .npy"),
        (np.zeros((3, 5)), r"\[N, 4\]"),
        (np.array([[130.0, 1, 1, 0.5]]), "off the 128x128 sensor"),
        (np.array([[1.0, 1, 2, 0.5]]), "polarity other than 0/1"),
        (np.array([[1.0, 1, 1, np.nan]]), "non-finite"),
    ],
)
def test_tonic_gesture_files_are_checked(tmp_path, array, error):
    from keras_spikformer.data.event_limits import EventFileError
    from keras_spikformer.data.tonic_gesture import read_tonic_npy

    path = tmp_path / "0.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(EventFileError, match=error):
        read_tonic_npy(str(path))
