"""Published checkpoints on first use: finding, fetching, verifying, caching.

This package sits below the models: `preset_builder` calls down into it, and
it imports the converter only inside a function, so nothing imports in a
circle.

A preset names its published checkpoint in `metadata.json`:

    "weights_source": {
      "url": "https://drive.google.com/file/d/<id>/view",  # or any http(s) URL; null: none
      "file_name": "sdt_8_384_imagenet.pth.tar",  # stored under this name (cache, mirror)
      "sha256": null,        # 64 hex digits when known; checked after download
      "size": null,          # bytes when known; checked after download
      "licence": "Apache-2.0 (upstream LICENSE)",  # as stated upstream, or "none stated"
      "use_ema": false,      # convert state_dict_ema instead of the weights
      "converter_options": {},  # convert_checkpoint arguments the preset cannot tell
      "note": "..."          # optional: provenance, why there is no URL
    }

Only `url` and `file_name` are required when `url` is not null; a source
with `"url": null` (links removed upstream, a Drive folder whose files are
not resolved: say which in `note`, and `folder_url` may hold the folder)
means nothing is fetched. `from_preset(name)` with `load_weights` None or True
on a preset without weight files then downloads the file once (Google Drive
links through `gdown`, the `weights` extra), converts it with the preset as
the target, and loads the converted preset from the cache. Settings:
`KERAS_SPIKFORMER_CACHE`, `KERAS_SPIKFORMER_OFFLINE` (or `HF_HUB_OFFLINE`),
`KERAS_SPIKFORMER_MIRROR` (see `settings`).
"""

from keras_spikformer.fetch.errors import FetchError
from keras_spikformer.fetch.pretrained import (
    fetch_checkpoint,
    fetch_pretrained,
    fetch_url,
    weights_directory,
    weights_source_of,
)
from keras_spikformer.fetch.settings import cache_dir, offline_variable
from keras_spikformer.fetch.weights_source import WeightsSource, read_weights_source

__all__ = [
    "FetchError",
    "WeightsSource",
    "cache_dir",
    "fetch_checkpoint",
    "fetch_pretrained",
    "fetch_url",
    "offline_variable",
    "read_weights_source",
    "weights_directory",
    "weights_source_of",
]
