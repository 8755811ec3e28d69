"""Energy table of a preset of any family next to the paper's figures.

Builds the preset without weights (random initialisation, so firing rates, and
with them SOPs and energy, differ from the trained model's; the MAC counts and
the method are what compare), measures a batch of synthetic images and prints
the per-layer table (see `keras_spikformer.analysis.energy.CONVENTIONS` and
the family's rules in `energy_families.py`). The paper's figures come from the
preset's metadata (`paper`: `energy_mj`, `sops_g`, `source`).

A freshly initialised network is almost silent after its second stage (its
batch norms hold the initial statistics, mean 0 and variance 1, so deeper
layers never reach threshold). `--calibrate-bn` (the default) first sets every
batch norm's moving statistics to the statistics of the synthetic batch (one
train-mode pass with momentum 0), as the reference fixtures do, so that every
layer spikes and every row of the table is exercised; `--no-calibrate-bn`
measures the raw initialisation.

Usage:
    python benchmarks/energy_table.py [--preset spikformer_8_768_imagenet]
        [--image-size 288]
        [--batch 2] [--seed 0] [--no-calibrate-bn] [--markdown PATH] [--json PATH]
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from keras_spikformer import presets
from keras_spikformer.analysis.energy import energy_report


def calibrate_batch_norms(model, images):
    """Sets every batch norm's moving statistics to those of `images`.

    One train-mode pass with momentum 0: each batch norm stores the statistics
    of its input, so the eval-mode pass on the same images reproduces the
    train-mode one. Only the moving statistics change.
    """
    norms = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [norm.momentum for norm in norms]
    try:
        for norm in norms:
            norm.momentum = 0.0
        model(images, training=True)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="spikformer_8_768_imagenet")
    parser.add_argument("--batch", type=int, default=2, help="synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--image-size", type=int, help="square input size (default: the preset's)"
    )
    parser.add_argument(
        "--calibrate-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="set batch-norm statistics from the synthetic batch first",
    )
    parser.add_argument("--markdown", type=Path, help="write the Markdown table here")
    parser.add_argument("--json", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    task_cls = presets.task_class(args.preset)
    options = {}
    if args.image_size:
        channels = presets.read_config(presets.resolve(args.preset))["image_shape"][-1]
        options["image_shape"] = (args.image_size, args.image_size, channels)
    model = task_cls.from_preset(args.preset, load_weights=False, **options)
    build_s = time.perf_counter() - start
    shape = model.inputs[0].shape[1:]
    # Normalised-image statistics: N(0, 1) per pixel.
    images = np.random.default_rng(args.seed).standard_normal(
        (args.batch, *shape), dtype=np.float32
    )
    if args.calibrate_bn:
        calibrate_batch_norms(model, images)
    start = time.perf_counter()
    report = energy_report(model, images)
    measure_s = time.perf_counter() - start

    metadata = presets.read_json(presets.resolve(args.preset) / "metadata.json")
    paper = metadata.get("paper", {})
    table = report.to_markdown()
    comparison = [
        "",
        f"| {args.preset} | SOPs (G) | energy (mJ) | ANN MACs (G) | ANN energy (mJ) |",
        "|---|---:|---:|---:|---:|",
        f"| this run (random weights{', BN calibrated' if args.calibrate_bn else ''}, "
        f"{args.batch} synthetic image(s)) "
        f"| {report.total_sops:.2f} | {report.total_mj:.3f} | {report.ann_macs:.2f} "
        f"| {report.ann_mj:.3f} |",
        f"| paper (trained weights; {paper.get('source', 'no source')}) "
        f"| {paper.get('sops_g', '-')} | {paper.get('energy_mj', '-')} | | |",
        "",
        f"Build {build_s:.1f} s, measurement {measure_s:.1f} s "
        f"(backend {keras.backend.backend()}, batch {args.batch}).",
        "",
        "The MAC counts are exact for the architecture; SOPs and energy follow "
        "the firing rates, which depend on the weights.",
        "",
    ]
    text = table + "\n".join(comparison)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.json:
        data = report.to_dict()
        data.update(paper=paper, build_seconds=build_s, measure_seconds=measure_s)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2))
    return report


if __name__ == "__main__":
    main()
