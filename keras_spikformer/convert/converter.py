"""Reference checkpoint -> Keras preset directory."""

import dataclasses
import hashlib
import warnings
from pathlib import Path

from keras_spikformer import preset_builder, presets
from keras_spikformer.convert.checkpoint_files import read_checkpoint
from keras_spikformer.convert.families import family_by_name, family_of_state_dict
from keras_spikformer.convert.reference_weights import load_reference_weights
from keras_spikformer.convert.spikformer_architecture import ArchitectureError
from keras_spikformer.convert.tensor_values import check_tensor_values
from keras_spikformer.io_utils import check_writable_directory
from keras_spikformer.presets import is_preset_directory

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
    # Set when the checkpoint was read as a named family (`family=`) and when
    # old tensor names were matched by position: `(checkpoint name, model name)`.
    family: str | None = None
    by_position: list = dataclasses.field(default_factory=list)

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
            ]
            + [
                f"matched by position ({len(self.by_position)}, old names): "
                + ", ".join(f"{a} -> {b}" for a, b in self.by_position)
            ] * bool(self.by_position)
            + [
                f"wrote preset {self.output}",
            ]
        )  # fmt: skip


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _recipe_preset(task_cls, family, config, notes):
    """The zoo preset whose recipe (normalisation, evaluation crop) a checkpoint
    converted without `--preset` gets: same family and input shape, else the
    same channels and encoding (the preprocessor normalises per channel)."""
    shape = list(config["image_shape"])
    encoding = config.get("encoding")

    def read(name):
        return presets.read_config(presets.resolve(name))

    if family.FAMILY == "spikformer":
        flavour_preset = _FLAVOUR_PRESETS[notes["family"]]
        if list(read(flavour_preset)["image_shape"])[2:] == shape[2:]:
            return flavour_preset

    def closeness(name):
        # Same input shape first; else the same channels (the preprocessor
        # normalises per channel) and encoding; else the same channels.
        other = read(name)
        same_channels = list(other["image_shape"])[2:] == shape[2:]
        same_encoding = encoding is None or other.get("encoding") == encoding
        return (
            list(other["image_shape"]) == shape,
            same_channels and same_encoding,
            same_channels,
        )

    names = sorted(task_cls.presets)
    return max(names, key=closeness)  # the first of the closest, by name


def convert_checkpoint(
    checkpoint,
    output,
    preset=None,
    use_ema=False,
    overwrite=False,
    progress=True,
    family=None,
    **architecture,
):
    """Converts a reference checkpoint of any supported family into a preset directory.

    The family (Spikformer, Spike-driven Transformer, QKFormer,
    Meta-SpikeFormer) is recognised from the tensor names.

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
        family: a family name (e.g. `"ms_qkformer"`) to read the checkpoint
            as, when its names say another family whose tensors it shares
            (a QKFormer ImageNet file as MS-QKFormer); `None` recognises it.
        **architecture: backbone arguments of the checkpoint's family that the
            shapes cannot tell or that override the preset (Spikformer:
            `num_heads`, `num_timesteps`, `image_shape`, `patch_size`,
            `attention_scale`, `encoding`), or `image_size=(H, W)` (channels
            then come from the weights). `None` values are ignored.

    Returns:
        A `ConversionReport`, also stored under `"conversion"` in the preset's
        metadata.json.

    Example:
    >>> report = convert_checkpoint("model_best.pth.tar", "spikformer_cifar10",
    ...                             preset="spikformer_4_384_cifar10")
    >>> model = Spikformer.from_preset("spikformer_cifar10")
    """
    output = Path(output)
    # Before any work: only a preset of ours is replaced (never the user's files).
    check_writable_directory(
        output, overwrite, ("keras-spikformer preset", is_preset_directory)
    )
    image_size = architecture.pop("image_size", None)
    given = {k: v for k, v in architecture.items() if v is not None}
    contents = read_checkpoint(checkpoint, use_ema=use_ema, progress=progress)
    state_dict = contents.state_dict
    try:
        named = None if family is None else family_by_name(family)
        family, task_cls = family_of_state_dict(state_dict)
        if named is not None and named[0] is not family:
            # The user says what the names do not: translate them (or refuse).
            if not hasattr(named[0], "from_family"):
                raise ValueError(
                    f"it is a {family.FAMILY} checkpoint and cannot be read as "
                    f"{named[0].FAMILY}; drop --family or pass --family {family.FAMILY}."
                )
            state_dict = named[0].from_family(family.FAMILY, state_dict)
            family, task_cls = named
    except ValueError as error:
        raise ArchitectureError(f"{checkpoint}: {error}") from None
    check_tensor_values(state_dict, family.is_ignored, checkpoint)
    metadata = {}
    if preset is not None:
        directory = presets.resolve(preset)
        preset_cls = presets.task_class(directory)
        if preset_cls is not task_cls:
            raise ArchitectureError(
                f"{checkpoint} is a {family.FAMILY} checkpoint but preset {str(preset)!r} "
                f"is a {preset_cls.__name__}; pick a preset of {task_cls.__name__} "
                f"(see {task_cls.__name__}.presets) or omit --preset to infer it; "
                "if the file really holds that family's weights under these names, "
                "say so with --family NAME (e.g. --family ms_qkformer)."
            )
        config = {**presets.read_config(directory), **given}
        provenance = {k: "given" if k in given else f"preset {preset}" for k in config}
        meta_path = directory / presets.METADATA_FILE
        metadata = presets.read_json(meta_path) if meta_path.is_file() else {}
        recipe = presets.read_recipe(directory)
    else:
        try:
            backbone_config, num_classes, provenance = family.infer_architecture(
                state_dict, **given
            )
        except ArchitectureError:
            raise
        except ValueError as error:
            raise ArchitectureError(f"{checkpoint}: {error}") from None
        config = {**backbone_config, "num_classes": num_classes}
        recipe = presets.read_recipe(
            presets.resolve(_recipe_preset(task_cls, family, config, provenance))
        )
    if image_size is not None:
        config["image_shape"] = [int(image_size[0]), int(image_size[1]), config["image_shape"][2]]
        provenance["image_shape"] = "given"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = preset_builder.build_task(task_cls, config, recipe)
    except (TypeError, ValueError) as error:
        raise ArchitectureError(
            f"The architecture for {checkpoint} is invalid: {error}"
        ) from None
    try:
        load = load_reference_weights(model, state_dict, strict=False)
    except ValueError as error:  # e.g. old names that do not match by position
        raise ArchitectureError(f"{checkpoint}: {error} Nothing was written.") from None
    if not load.ok:
        target = f"preset {str(preset)!r}" if preset else "the inferred architecture"
        raise ArchitectureError(
            f"{checkpoint} does not fit {target}; nothing was written.\n"
            f"{load.describe()}\n"
            "Name the matching preset (--preset) or the options the shapes cannot tell "
            "(--num-heads, --num-timesteps, --image-size); `keras-spikformer convert "
            "--help` lists them."
        )
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
        family=None if named is None else family.FAMILY,
        by_position=[list(pair) for pair in load.by_position],
    )
    model.preset_metadata = {
        **metadata,
        "weights": f"converted from {Path(checkpoint).name} (sha256 {report.sha256[:16]}...)",
        "weights_note": "Reference weights converted by keras-spikformer; see `conversion`.",
        "conversion": report.to_dict(),
    }
    model.save_to_preset(output, overwrite=overwrite)
    return report
