"""Where downloads are kept and whether (and from where) they may be fetched.

Environment variables (read at each call, so tests and users can change them):

- `KERAS_SPIKFORMER_CACHE`: the cache folder; default `~/.cache/keras_spikformer`.
- `KERAS_SPIKFORMER_OFFLINE=1` (or Hugging Face's `HF_HUB_OFFLINE=1`): never
  reach the network; only what the cache holds is used.
- `KERAS_SPIKFORMER_MIRROR=URL`: fetch `URL/<preset name>/<file_name>` instead
  of the authors' host (firewalled sites, tests).
"""

import os
from pathlib import Path

CACHE_ENV = "KERAS_SPIKFORMER_CACHE"
OFFLINE_ENVS = ("KERAS_SPIKFORMER_OFFLINE", "HF_HUB_OFFLINE")
MIRROR_ENV = "KERAS_SPIKFORMER_MIRROR"
DEFAULT_CACHE = "~/.cache/keras_spikformer"
_TRUE = ("1", "true", "yes", "on")


def cache_dir():
    """The cache folder (`$KERAS_SPIKFORMER_CACHE`, else `~/.cache/keras_spikformer`).

    Returns:
        An absolute `Path`; it may not exist yet.

    Example:
    >>> cache_dir()
    PosixPath('/home/me/.cache/keras_spikformer')
    """
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser().absolute()


def offline_variable():
    """The name of the set offline variable (`"KERAS_SPIKFORMER_OFFLINE"`), or None.

    Example:
    >>> offline_variable() or "online"
    'online'
    """
    for name in OFFLINE_ENVS:
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


def mirror_url(preset_name, file_name):
    """`$KERAS_SPIKFORMER_MIRROR/<preset_name>/<file_name>`, or None when unset.

    Example:
    >>> mirror_url("sdt_8_384_imagenet", "sdt_8_384_imagenet.pth.tar")
    'https://mirror.example.org/weights/sdt_8_384_imagenet/sdt_8_384_imagenet.pth.tar'
    """
    base = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not base:
        return None
    if not base.startswith(("http://", "https://")):
        from keras_spikformer.fetch.errors import FetchError

        raise FetchError(
            f"{MIRROR_ENV}={base!r} is not an http(s):// URL; set it to the base URL "
            "that serves <preset name>/<file_name>, or unset it."
        )
    return f"{base}/{preset_name}/{file_name}"
