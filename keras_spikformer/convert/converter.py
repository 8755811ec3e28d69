"""Reference checkpoint -> Keras preset directory."""

import dataclasses
import hashlib
import warnings
from pathlib import Path

from keras_spikformer import presets
from keras_spikformer.convert.architecture import ArchitectureError, infer_architecture
from keras_spikformer.convert.checkpoint_files import read_checkpoint
from keras_spikformer.convert.reference_weights import load_reference_weights
from keras_spikformer.io_utils import read_json


# The zoo preset whose recipe (normalisation, evaluation crop) a converted
# checkpoint of each reference flavour gets when no preset is named.
_FLAVOUR_PRESETS = {
    "cifar": "spikformer_4_384_cifar10",
    "imagenet": "spikformer_8_768_imagenet",
    "dvs": "spikformer_2_256_cifar10dvs",
}


@dataclasses.dataclass
class ConversionReport:
    """What `convert_checkpoint` read, inferred, mapped and ignored."""

    checkpoint: str
    sha256: str
    format: str
    source_key: str | None
    stripped_prefix: str | None
    preset: str | None
    config: dict
    provenance: dict
    loaded: int
    ignored: list
    extras: list
    output: str

    def to_dict(self):
        return dataclasses.asdict(self)

    def describe(self):
        inferred = ", ".join(
            f"{k}={self.config.get(k)!r} ({v})"
            for k, v in self.provenance.items()
            if k in self.config
        )
        return "\n".join(
            [
                f"read {self.checkpoint} ({self.format}; weights from "
                f"{self.source_key or 'the top level'}"
                + (f", stripped prefix {self.stripped_prefix!r}" if self.stripped_prefix else "")
                + ")",
                f"architecture ({self.provenance.get('family', 'from the preset')} "
                f"family): {inferred}",
                f"mapped {self.loaded} tensors; ignored {len(self.ignored)} "
                f"(unused LayerNorms, BN counters): {self.ignored}",
                f"ignored top-level entries: {self.extras}",
                f"wrote preset {self.output}",
            ]
        )  # fmt: skip


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoint(
    checkpoint,
    output,
    preset=None,
    use_ema=False,
    overwrite=False,
    progress=True,
    **architecture,
):
    """Converts a reference Spikformer checkpoint into a preset directory.

    Nothing from the file is executed (see `checkpoint_files`); every tensor
    is checked before anything is written; the directory is written
    atomically and never replaces an existing one unless `overwrite=True`.

    Args:
        checkpoint: path to a `.pth`/`.pth.tar`/`.pt`, `.safetensors` or `.npz`.
        output: the preset directory to write.
        preset: a zoo name or preset directory the checkpoint must match; if
            `None`, the architecture is inferred from tensor shapes.
        use_ema: take the EMA weights (`state_dict_ema`).
        overwrite: replace an existing `output`.
        progress: show a progress bar for large files.
        **architecture: `Spikformer` arguments the shapes cannot tell or that
            override the preset: `num_heads`, `num_timesteps`, `image_shape`,
            `patch_size`, `attention_scale`, `encoding`, or `image_size=(H, W)`
            (channels then come from the weights). `None` values are ignored.

    Returns:
        A `ConversionReport`, also stored under `"conversion"` in the preset's
        metadata.json.

    Example:
    >>> report = convert_checkpoint("model_best.pth.tar", "spikformer_cifar10",
    ...                             preset="spikformer_4_384_cifar10")
    >>> model = Spikformer.from_preset("spikformer_cifar10")
    """
    from keras_spikformer.models import Spikformer

    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(
            f"{output} already exists; pass overwrite=True (CLI: --overwrite) to "
            "replace it, or choose another --output."
        )
    image_size = architecture.pop("image_size", None)
    given = {k: v for k, v in architecture.items() if v is not None}
    contents = read_checkpoint(checkpoint, use_ema=use_ema, progress=progress)
    if image_size is not None:
        stem = contents.state_dict.get("patch_embed.proj_conv.weight")
        channels = 3 if stem is None else int(stem.shape[1])
        given["image_shape"] = [int(image_size[0]), int(image_size[1]), channels]
    metadata = {}
    if preset is not None:
        directory = presets.resolve(preset)
        config = {**presets.read_config(directory), **given}
        provenance = {k: "given" if k in given else f"preset {preset}" for k in config}
        meta_path = directory / presets.METADATA_FILE
        metadata = read_json(meta_path) if meta_path.is_file() else {}
        recipe = presets.read_recipe(directory)
    else:
        config, provenance = infer_architecture(contents.state_dict, **given)
        recipe = presets.read_recipe(presets.resolve(_FLAVOUR_PRESETS[provenance["family"]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = presets.build_task(Spikformer, config, recipe)
    try:
        load = load_reference_weights(model, contents.state_dict)
    except ValueError as error:
        target = f"preset {preset!r}" if preset else "the inferred architecture"
        raise ArchitectureError(
            f"{checkpoint} does not fit {target}; nothing was written.\n{error}"
        ) from error
    report = ConversionReport(
        checkpoint=str(checkpoint),
        sha256=_sha256(checkpoint),
        format=contents.format,
        source_key=contents.source_key,
        stripped_prefix=contents.stripped_prefix,
        preset=None if preset is None else str(preset),
        config=model.get_config(),
        provenance=provenance,
        loaded=len(load.loaded),
        ignored=load.ignored,
        extras=list(contents.extras),
        output=str(output),
    )
    model.preset_metadata = {
        **metadata,
        "weights": f"converted from {Path(checkpoint).name} (sha256 {report.sha256[:16]}...)",
        "weights_note": "Reference weights converted by keras-spikformer; see `conversion`.",
        "conversion": report.to_dict(),
    }
    model.save_to_preset(output, overwrite=overwrite)
    return report
