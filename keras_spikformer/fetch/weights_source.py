"""A preset's `weights_source` (in its metadata.json): read and checked.

The format is described in `keras_spikformer.fetch` (the package docstring).
"""

import dataclasses
import re
from pathlib import PurePosixPath

from keras_spikformer.fetch.errors import FetchError

# convert_checkpoint's keyword arguments a source may set (what the shapes and
# the preset's own config cannot tell).
CONVERTER_OPTIONS = {
    "num_timesteps",
    "num_heads",
    "image_size",
    "patch_size",
    "attention_scale",
    "encoding",
    "pooling",
    "erode",
    "flavour",
    "distillation_head",
}
_FIELDS = {
    "url",
    "file_name",
    "sha256",
    "size",
    "licence",
    "use_ema",
    "converter_options",
    "note",
    "folder_url",
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where a preset's published checkpoint is and how to convert it.

    Attributes:
        url: the authors' published link (http(s)); None when there is none.
        file_name: the name the file is stored under (cache and mirror).
        sha256: lower-case hex digest, or None when unknown.
        size: bytes, or None when unknown.
        licence: the upstream licence as stated, or "none stated".
        use_ema: convert the EMA weights (`state_dict_ema`).
        converter_options: extra `convert_checkpoint` arguments.
        note: free text (why there is no URL, what a folder holds).
    """

    url: str | None
    file_name: str | None
    sha256: str | None = None
    size: int | None = None
    licence: str = "none stated"
    use_ema: bool = False
    converter_options: dict = dataclasses.field(default_factory=dict)
    note: str | None = None


def read_weights_source(metadata, where):
    """The `weights_source` of a preset's parsed metadata, checked.

    Args:
        metadata: the preset's metadata.json as a dict.
        where: the metadata file's path, for errors.

    Returns:
        A `WeightsSource` with a URL, or None when the metadata records no
        source or a source without a URL (e.g. links removed upstream).

    Raises:
        FetchError: a malformed entry, naming the field and the file.

    Example:
    >>> read_weights_source(read_json("zoo/sdt_8_384_imagenet/metadata.json"), "...")
    WeightsSource(url='https://drive.google.com/...', ...)
    """
    entry = metadata.get("weights_source") if isinstance(metadata, dict) else None
    if entry is None:
        return None

    def bad(field, why):
        return FetchError(
            f"{where}: weights_source.{field} {why}. See the format in the README "
            "section 'Pretrained weights'."
        )

    if not isinstance(entry, dict):
        raise bad("", "must be an object")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise bad(str(unknown), f"unknown field(s); the fields are {sorted(_FIELDS)}")
    url = entry.get("url")
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise bad("url", f"must be an http(s):// URL or null, not {url!r}")
    name = entry.get("file_name")
    if (
        not isinstance(name, str)
        or not _FILE_NAME.match(name)
        or name != PurePosixPath(name).name
    ):
        raise bad("file_name", f"must be a plain file name (letters, digits, ._-), not {name!r}")  # fmt: skip
    sha256 = entry.get("sha256")
    if sha256 is not None and (
        not isinstance(sha256, str) or not _SHA256.match(sha256)
    ):
        raise bad("sha256", "must be 64 lower-case hex digits or null")
    size = entry.get("size")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or size <= 0
    ):
        raise bad("size", "must be a positive number of bytes or null")
    options = entry.get("converter_options") or {}
    if not isinstance(options, dict) or set(options) - CONVERTER_OPTIONS:
        raise bad("converter_options", f"may only set {sorted(CONVERTER_OPTIONS)}")
    use_ema = entry.get("use_ema", False)
    if not isinstance(use_ema, bool):
        raise bad("use_ema", "must be true or false")
    return WeightsSource(
        url=url,
        file_name=name,
        sha256=sha256,
        size=size,
        licence=str(entry.get("licence") or "none stated"),
        use_ema=use_ema,
        converter_options=dict(options),
        note=entry.get("note"),
    )
