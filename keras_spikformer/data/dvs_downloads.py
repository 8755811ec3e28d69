"""The published DVS archives, downloaded, verified and extracted on first use.

`dvs_dataset(name, data_dir)` returns `(kind, root)`: a folder holding
`"cifar10dvs"` or `"dvsgesture"` in a layout `event_datasets` reads (`kind`).
A folder that already holds the dataset is used as it is, offline. Otherwise the published
archives are downloaded into `<root>/downloads/` (`fetch`'s downloader:
progress bar, `.part` file resumed, atomic rename), checked against their
MD5, and extracted by `safe_extract` (no path leaving the folder, no links,
bounded sizes). `KERAS_SPIKFORMER_OFFLINE=1` gives an error instead of a
download; `KERAS_SPIKFORMER_MIRROR=URL` fetches `URL/<dataset>/<file name>`.

Sources (the authors' files; URLs and MD5s as listed by SpikingJelly's
`CIFAR10DVS.resource_url_md5()` and `DVS128Gesture.resource_url_md5()`):

- CIFAR10-DVS: ten class zips of AEDAT 2.0 recordings on figshare
  (https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671), each
  holding `<class>/cifar10_<class>_<i>.aedat`. (tonic's `CIFAR10DVS` now
  fetches a re-encoded AEDAT4 copy instead, which these readers do not read.)
- DVS128 Gesture: IBM's `DvsGesture.tar.gz` (AEDAT 3.1, label CSVs, trial
  lists) is on an IBM Box folder page that offers no direct link
  (`DVSGESTURE_PAGE`). By default the copy that tonic's `DVSGesture` fetches
  is downloaded instead (`ibmGestureTrain.tar.gz`, `ibmGestureTest.tar.gz` on
  figshare, URLs and MD5s from tonic): the same official train/test users,
  cut into one `.npy` per gesture, times in milliseconds; `tonic_gesture`
  turns it into an npz event folder (`kind` `"npz_folder"`). IBM's own
  archive, put by hand in `<root>/downloads/`, is used instead when there.
"""

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from keras_spikformer.data import events as _events
from keras_spikformer.data.safe_extract import extract_archive


class Archive(NamedTuple):
    """One published archive: its file name, URL (None: no direct link) and MD5."""

    file_name: str
    url: object
    md5: str
    max_bytes: int  # bound on what it extracts to
    max_members: int


_FIGSHARE = "https://ndownloader.figshare.com/files/"
_CIFAR10DVS_FILES = {  # class: figshare file id, md5
    "airplane": ("7712788", "0afd5c4bf9ae06af762a77b180354fdd"),
    "automobile": ("7712791", "8438dfeba3bc970c94962d995b1b9bdd"),
    "bird": ("7712794", "a9c207c91c55b9dc2002dc21c684d785"),
    "cat": ("7712812", "52c63c677c2b15fa5146a8daf4d56687"),
    "deer": ("7712815", "b6bf21f6c04d21ba4e23fc3e36c8a4a3"),
    "dog": ("7712818", "f379ebdf6703d16e0a690782e62639c3"),
    "frog": ("7712842", "cad6ed91214b1c7388a5f6ee56d08803"),
    "horse": ("7712851", "e7cbbf77bec584ffbf913f00e682782a"),
    "ship": ("7712836", "41c7bd7d6b251be82557c6cce9a7d5c9"),
    "truck": ("7712839", "89f3922fd147d9aeff89e76a2b0b70a7"),
}
DVSGESTURE_PAGE = (
    "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794"
)

ARCHIVES = {
    "cifar10dvs": tuple(
        Archive(f"{c}.zip", _FIGSHARE + file_id, md5, 2**32, 4_000)
        for c, (file_id, md5) in _CIFAR10DVS_FILES.items()
    ),
    "dvsgesture": (  # tonic's copy (figshare)
        Archive(
            "ibmGestureTrain.tar.gz",
            "https://figshare.com/ndownloader/files/38022171",
            "3a8f0d4120a166bac7591f77409cb105",
            2**35,
            4_000,
        ),
        Archive(
            "ibmGestureTest.tar.gz",
            "https://figshare.com/ndownloader/files/38020584",
            "56070e45dadaa85fff82e0fbfbc06de5",
            2**34,
            1_000,
        ),
    ),  # fmt: skip
}
IBM_GESTURE = Archive(  # IBM's archive: a browser download from DVSGESTURE_PAGE
    "DvsGesture.tar.gz", None, "8a5c71fb11e24e5ca5b11866ca6c00a1", 2**35, 2_000
)
TONIC_NPZ = "npz"  # where tonic's gesture copy is converted to, under the root
TITLES = {"cifar10dvs": "CIFAR10-DVS", "dvsgesture": "DVS128 Gesture"}


def default_root(name):
    """`$KERAS_SPIKFORMER_CACHE/datasets/<name>`, where downloads go by default."""
    from keras_spikformer.fetch.settings import cache_dir

    return cache_dir() / "datasets" / name


def is_present(name, root, complete=False):
    """Whether `root` holds the dataset's layout (any class folder, or all)."""
    root = Path(root)
    if name == "cifar10dvs":
        found = [(root / c).is_dir() for c in _events.CIFAR10DVS_CLASS_NAMES]
        return all(found) if complete else any(found)
    return any(
        (folder / f"trials_to_{s}.txt").is_file()
        for folder in (root, root / "DvsGesture")
        for s in ("train", "test")
    )


def file_md5(path):
    """The hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _url(name, archive, path):
    from keras_spikformer.fetch.settings import MIRROR_ENV, mirror_url

    url = mirror_url(name, archive.file_name) or archive.url
    if url is None:
        raise FileNotFoundError(
            f"{TITLES[name]}'s published archive {archive.file_name} (MD5 "
            f"{archive.md5}) is on {DVSGESTURE_PAGE}, which offers no direct "
            f"link. Download it there in a browser and put it at {path}, then run "
            f"again (it is checked and extracted); or set {MIRROR_ENV} to a server "
            f"holding {name}/{archive.file_name}."
        )
    return url


def _fetch(name, archive, downloads):
    """The verified archive in `downloads`, downloaded when absent."""
    from keras_spikformer.fetch.http_download import download_file
    from keras_spikformer.fetch.settings import offline_variable

    path = downloads / archive.file_name
    if not path.is_file():
        url = _url(name, archive, path)
        variable = offline_variable()
        if variable:
            raise FileNotFoundError(
                f"{TITLES[name]} is not in {downloads.parent}, and {variable}=1 "
                f"forbids downloading {url}. Unset {variable}, or download it "
                f"yourself to {path}, or pass --data-dir with the extracted data."
            )
        print(f"Downloading {TITLES[name]} {archive.file_name} from {url}")
        download_file(url, path)
    digest = file_md5(path)
    if digest != archive.md5:
        os.unlink(path)
        raise ValueError(
            f"MD5 mismatch for {path}: expected {archive.md5}, got {digest}. The "
            "file was deleted: it is damaged or not the published archive. Run "
            "again to download it afresh."
        )
    return path


def _fetch_all(name, root, archives):
    downloads = root / "downloads"
    for archive in archives:
        marker = downloads / f"{archive.file_name}.extracted"
        if marker.is_file():
            continue
        path = _fetch(name, archive, downloads)
        extract_archive(path, root, archive.max_bytes, archive.max_members)
        marker.write_text(archive.md5 + "\n")


def _tonic_gesture(root):
    from keras_spikformer.data.tonic_gesture import SPLIT_FOLDERS, convert_tonic_gesture

    extracted = all((root / f).is_dir() for f in SPLIT_FOLDERS.values())
    if (root / "downloads").is_dir() or not extracted:  # else: tonic's, by hand
        _fetch_all("dvsgesture", root, ARCHIVES["dvsgesture"])
    out = root / TONIC_NPZ
    done = out / ".converted"
    if not done.is_file():
        print(f"Converting tonic's DVS128 Gesture files to {out}")
        convert_tonic_gesture(root, out)
        done.write_text("tonic_gesture\n")
    return "npz_folder", out


def dvs_dataset(name, data_dir=None):
    """`(kind, root)` of `name`'s recordings, downloaded and extracted if missing.

    Args:
        name: `"cifar10dvs"` or `"dvsgesture"`.
        data_dir: the dataset folder; None for `default_root(name)`. A folder
            that holds the dataset already (and no `downloads/` folder of an
            unfinished download) is returned untouched.

    Returns:
        `(kind, root)`: the `event_frames_dataset` kind (`name`, or
        `"npz_folder"` for tonic's gesture copy) and the folder, a `Path`.

    Raises:
        FileNotFoundError: offline (the error names what is missing).
        ValueError: an MD5 mismatch (the file is deleted), an unsafe archive
            (`safe_extract.UnsafeArchiveError`), an archive without the
            expected layout, or a failed download (`fetch.FetchError`).

    Example:
    >>> kind, root = dvs_dataset("cifar10dvs")  # doctest: +SKIP
    """
    if name not in ARCHIVES:
        raise ValueError(f"No published archive is known for {name!r}.")
    root = Path(data_dir).expanduser() if data_dir else default_root(name)
    downloads = root / "downloads"  # present: a download of ours, maybe unfinished
    if not downloads.is_dir() and root.is_dir() and is_present(name, root):
        return name, root
    if name == "dvsgesture":
        ibm = downloads / IBM_GESTURE.file_name
        if not (ibm.is_file() or ibm.with_name(ibm.name + ".extracted").is_file()):
            return _tonic_gesture(root)
        _fetch_all(name, root, (IBM_GESTURE,))
    else:
        _fetch_all(name, root, ARCHIVES[name])
    if not is_present(name, root, complete=True):
        raise ValueError(
            f"The {TITLES[name]} archives were extracted into {root}, but it does "
            "not hold the published layout (see keras_spikformer.data."
            "event_datasets); delete the folder and run again."
        )
    return name, root
