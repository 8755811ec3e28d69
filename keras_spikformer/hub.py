"""Presets on the Hugging Face Hub: `hf://owner/name` handles.

`from_preset("hf://owner/name")` (or `hf://owner/name@revision`) downloads a
preset directory through `huggingface_hub` into the usual Hugging Face cache
and loads it; `upload_preset("hf://owner/name", directory)` publishes one.
Both need the optional extra: `pip install "keras-spikformer[hub]"`.

The environment variables of `huggingface_hub` apply, read when the call is
made: `HF_ENDPOINT` (another Hub or a mirror), `HF_HUB_CACHE` / `HF_HOME`
(where the cache lives), `HF_HUB_OFFLINE=1` (use the cache only, never the
network) and `HF_TOKEN` (private repositories, uploads).
"""

import json
import os
import re
import warnings
from pathlib import Path

from keras_spikformer import presets
from keras_spikformer.hdf5_safety import UnsafeHDF5Error, inspect_hdf5
from keras_spikformer.presets import PresetError
from keras_spikformer.version import __version__

SCHEME = "hf"
SUPPORTED = (
    "a zoo name (see `keras_spikformer.Spikformer.presets`), a local preset "
    "directory, or hf://owner/name[@revision] (Hugging Face Hub)"
)
INSTALL_HINT = 'pip install "keras-spikformer[hub]"'
# What a preset directory may hold; nothing else is uploaded or downloaded.
PRESET_PATTERNS = [
    *presets.PRESET_FILES,
    presets.WEIGHTS_FILE,
    presets.TASK_WEIGHTS_FILE,
    "README.md",
]
# Files every preset written by `save_to_preset` has.
REQUIRED_FILES = (presets.CONFIG_FILE, presets.METADATA_FILE, presets.RECIPE_FILE)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class MissingHubExtraError(PresetError, ImportError):
    """`huggingface_hub` is not installed (the `hub` extra)."""


def parse_handle(handle):
    """Splits `hf://owner/name[@revision]` into `(repo_id, revision)`.

    Args:
        handle: str, the preset handle.

    Returns:
        `("owner/name", revision)`; `revision` is `None` for the default branch.

    Raises:
        PresetError: another scheme (not supported) or a malformed handle.

    Example:
    >>> parse_handle("hf://me/spikformer_digits@v1")
    ('me/spikformer_digits', 'v1')
    """
    text = str(handle)
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise PresetError(f"{text!r} is not a hub handle; use hf://owner/name.")
    if scheme.lower() != SCHEME:
        raise PresetError(
            f"{text!r}: the {scheme}:// scheme is not supported. keras-spikformer "
            f"loads {SUPPORTED}. Copy the preset to a local directory and pass its path."
        )
    repo_id, at, revision = rest.strip("/").partition("@")
    parts = repo_id.split("/")
    if (
        len(parts) != 2
        or not all(_NAME.match(p) for p in parts)
        or (at and not revision)
    ):
        raise PresetError(
            f"{text!r} is not a valid Hugging Face handle: expected "
            "hf://owner/name or hf://owner/name@revision (letters, digits, '-', "
            "'_' and '.'), e.g. hf://my-user/spikformer_digits."
        )
    if revision and (
        not _REVISION.match(revision)
        or any(part in ("", ".", "..") for part in revision.split("/"))
    ):
        raise PresetError(
            f"{text!r}: {revision!r} is not a valid revision: a branch, tag or commit "
            "is letters, digits, '-', '_', '.' and '/' between names (no '..', no "
            "empty part), e.g. hf://my-user/spikformer_digits@v1."
        )
    return repo_id, (revision or None)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise MissingHubExtraError(
            "hf:// presets need the huggingface_hub package, which is not installed. "
            f"Install the extra: {INSTALL_HINT}"
        ) from None
    return huggingface_hub


def _env_flag(name):
    value = os.environ.get(name)
    return (
        None if value is None else value.strip().upper() in {"1", "ON", "YES", "TRUE"}
    )


def _settings():
    """`(endpoint, cache_dir, offline)` from the environment at call time."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub")
        if os.environ.get("HF_HOME")
        else None
    )
    offline = _env_flag("HF_HUB_OFFLINE")
    if offline is None:
        offline = bool(constants.HF_HUB_OFFLINE)
    return endpoint, cache_dir or constants.HF_HUB_CACHE, offline


def download_preset(handle):
    """Downloads (or finds in the cache) the preset behind an `hf://` handle.

    Only the preset's files (`PRESET_PATTERNS`) are fetched, and only after
    `config.json` shows that the repository holds a keras-spikformer preset.

    Args:
        handle: str, `hf://owner/name` or `hf://owner/name@revision`.

    Returns:
        `pathlib.Path` of the preset directory in the Hugging Face cache.

    Raises:
        PresetError: unsupported scheme, a repository, revision or file that
            cannot be found or reached, a repository that is not a preset.
        MissingHubExtraError: `huggingface_hub` is not installed.

    Example:
    >>> download_preset("hf://my-user/spikformer_digits")
    PosixPath('.../snapshots/<commit>')
    """
    repo_id, revision = parse_handle(handle)
    hub = _hub()
    endpoint, cache_dir, offline = _settings()
    where = {
        "handle": handle,
        "endpoint": endpoint,
        "cache_dir": cache_dir,
        "offline": offline,
    }

    def fetch(patterns, rev):
        return Path(
            _call(
                where,
                hub.snapshot_download,
                repo_id,
                revision=rev,
                allow_patterns=patterns,
                cache_dir=cache_dir,
                endpoint=endpoint,
                local_files_only=offline,
                library_name="keras-spikformer",
                library_version=__version__,
            )
        )

    path = fetch([presets.CONFIG_FILE], revision)
    _check_is_preset(handle, repo_id, path / presets.CONFIG_FILE)
    # The snapshot folder is named after the commit: pin the rest to it.
    commit = path.name if _COMMIT.match(path.name) else revision
    return fetch(PRESET_PATTERNS, commit)


def _check_is_preset(handle, repo_id, config_path):
    if not config_path.is_file():
        raise PresetError(
            f"{handle} is not a keras-spikformer preset: the repository {repo_id} has "
            f"no {presets.CONFIG_FILE} (a preset holds {', '.join(REQUIRED_FILES)} and "
            "its weight files). Check the handle, or publish a preset with "
            "`keras_spikformer.upload_preset(handle, directory)`."
        )
    _check_config(config_path, f"{handle} ({repo_id})")


def _check_config(path, where):
    data = presets.read_json(path)
    registered = data.get("registered_name") if isinstance(data, dict) else None
    legacy = isinstance(data, dict) and data.get("class_name") == "Spikformer"
    ours = isinstance(registered, str) and registered.startswith("keras_spikformer>")
    if not (ours or legacy):
        found = data.get("class_name") if isinstance(data, dict) else None
        raise PresetError(
            f"{where} is not a keras-spikformer preset: its {presets.CONFIG_FILE} "
            f"describes {registered or found or 'no Keras object'!r}, not a "
            "keras_spikformer backbone. Use the library that wrote it, or a preset "
            "saved with keras-spikformer's `save_to_preset`."
        )


def _call(where, fn, *args, **kwargs):
    """Runs a `huggingface_hub` call; its errors become `PresetError`s with the fix.

    `where` holds the `handle`, `endpoint`, `cache_dir` and `offline` flag.
    """
    from huggingface_hub import utils as hf_errors

    handle, endpoint = where["handle"], where["endpoint"]

    def first_line(error):
        return (str(error).strip().splitlines() or [type(error).__name__])[0]

    try:
        return fn(*args, **kwargs)
    except hf_errors.GatedRepoError as e:
        raise PresetError(
            f"{handle}: the repository is gated ({first_line(e)}). Accept its terms on "
            "the Hub and log in (`hf auth login`) or set HF_TOKEN."
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise PresetError(
            f"{handle}: no such repository on {endpoint} (or it is private and no "
            "valid token is set). Check the owner and name, or log in (`hf auth "
            "login`) / set HF_TOKEN."
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise PresetError(
            f"{handle}: the repository has no revision {kwargs.get('revision')!r}. "
            "Check the branch, tag or commit after '@'."
        ) from None
    except hf_errors.LocalEntryNotFoundError as e:
        if where["offline"]:
            raise PresetError(
                f"{handle} is not (completely) in the Hugging Face cache "
                f"({where['cache_dir']}) and HF_HUB_OFFLINE is set, so nothing is "
                "downloaded. Download it once "
                "with network access (unset HF_HUB_OFFLINE) or pass a local preset "
                "directory."
            ) from None
        raise PresetError(
            f"{handle}: {endpoint} could not be reached and there is no complete "
            f"cached copy ({first_line(e)}). Check the network and HF_ENDPOINT, or "
            "set HF_HUB_OFFLINE=1 to use what is cached."
        ) from None
    except hf_errors.EntryNotFoundError as e:
        url = str(getattr(getattr(e, "response", None), "url", ""))
        name = (
            url.split("/resolve/", 1)[-1].partition("/")[2]
            if "/resolve/" in url
            else ""
        )
        raise PresetError(
            f"{handle}: {name or 'a file of the preset'} is listed in the repository "
            f"but cannot be downloaded ({first_line(e)}). The repository is "
            "incomplete: upload the preset again with `keras_spikformer.upload_preset`."
        ) from None
    except hf_errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            fix = "Log in (`hf auth login`) or set HF_TOKEN with access to the repository."
        else:
            fix = "Retry later, or check HF_ENDPOINT."
        raise PresetError(
            f"{handle}: the Hub at {endpoint} answered HTTP {status} ({first_line(e)}). {fix}"
        ) from None
    except (OSError, ValueError) as e:  # connection and validation errors
        if isinstance(e, PresetError):
            raise
        raise PresetError(
            f"{handle}: {type(e).__name__}: {first_line(e)}. Check the handle, the "
            "network and HF_ENDPOINT."
        ) from None


def check_preset_directory(directory):
    """Checks that `directory` is a complete keras-spikformer preset.

    Args:
        directory: str or path.

    Returns:
        The directory as a `pathlib.Path`.

    Raises:
        PresetError: naming the missing or corrupt file and the fix.
    """
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise PresetError(
            f"{path} is not a directory. Write a preset with "
            "`model.save_to_preset(directory)` and upload that directory."
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise PresetError(
            f"{path} is not a complete preset: {', '.join(missing)} missing. Write it "
            "again with `model.save_to_preset(directory)`."
        )
    presets.check_preset_files(path)  # regular files inside the directory only
    for name in presets.PRESET_FILES:
        if (path / name).is_file():
            presets.read_json(path / name)  # names a corrupt file
    _check_config(path / presets.CONFIG_FILE, str(path))
    for name in (presets.WEIGHTS_FILE, presets.TASK_WEIGHTS_FILE):
        if (path / name).is_file():
            try:  # no external storage, virtual datasets or links
                inspect_hdf5(path / name)
            except UnsafeHDF5Error as e:
                raise PresetError(str(e)) from None
    if not (path / presets.WEIGHTS_FILE).is_file():
        warnings.warn(
            f"{path} has no {presets.WEIGHTS_FILE}: the uploaded preset gives freshly "
            "initialised models.",
            stacklevel=3,
        )
    return path


def upload_preset(handle, directory, private=None):
    """Uploads a preset directory to the Hugging Face Hub.

    The directory is checked before any network work; the repository is
    created when it does not exist. Only the preset's files are uploaded.
    Needs a token with write access (`hf auth login` or `HF_TOKEN`).

    Args:
        handle: str, `hf://owner/name` (the default branch).
        directory: str or path, written by `save_to_preset`.
        private: bool, optional; visibility of a new repository (`None`: the
            Hub's default). Existing repositories keep theirs.

    Returns:
        str, the URL of the repository.

    Raises:
        PresetError: an incomplete directory, a bad handle or a Hub error.
        MissingHubExtraError: `huggingface_hub` is not installed.

    Example:
    >>> model.save_to_preset("./digits_preset")
    >>> keras_spikformer.upload_preset("hf://my-user/spikformer_digits", "./digits_preset")
    >>> keras_spikformer.Spikformer.from_preset("hf://my-user/spikformer_digits")
    """
    repo_id, revision = parse_handle(handle)
    if revision is not None:
        raise PresetError(
            f"{handle}: uploads go to the default branch; drop '@{revision}' "
            "(tag the commit on the Hub afterwards if you need a revision)."
        )
    path = check_preset_directory(directory)
    hub = _hub()
    endpoint, cache_dir, offline = _settings()
    if offline:
        raise PresetError(
            f"Cannot upload to {handle}: HF_HUB_OFFLINE is set. Unset it to upload."
        )
    api = hub.HfApi(
        endpoint=endpoint, library_name="keras-spikformer", library_version=__version__
    )
    where = {
        "handle": handle,
        "endpoint": endpoint,
        "cache_dir": cache_dir,
        "offline": offline,
    }
    visibility = {} if private is None else {"private": bool(private)}
    url = _call(where, api.create_repo, repo_id, exist_ok=True, **visibility)
    _call(
        where,
        api.upload_folder,
        repo_id=repo_id,
        folder_path=str(path),
        allow_patterns=PRESET_PATTERNS,
        commit_message=f"Upload keras-spikformer preset ({_describe(path)})",
    )
    return str(url)


def _describe(path):
    try:
        config = json.loads((path / presets.CONFIG_FILE).read_text(encoding="utf-8"))
        return str(config.get("class_name", "preset"))
    except (OSError, ValueError):
        return "preset"
