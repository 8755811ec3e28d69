"""The engine behind `keras-spikformer analyze`: report files and plots for a batch."""

import numpy as np

from keras_spikformer import presets
from keras_spikformer.analysis.energy import energy_report
from keras_spikformer.analysis.firing_rates import is_spikformer, neuron_layer_names
from keras_spikformer.analysis.plots import (
    plot_attention_maps,
    plot_firing_rates,
    plot_spike_raster,
)
from keras_spikformer.io_utils import atomic_directory, is_owned_directory, write_json


def _test_split(preset, model, dataset, data_dir=None, cache_dir=None):
    """`(data, eval_map)`: the test split as `train`/`evaluate` load it."""
    from keras_spikformer.data.registry import load_dataset
    from keras_spikformer.training.recipe import Recipe
    from keras_spikformer.training.trainer import preprocessors

    config = presets.read_config(presets.resolve(preset))
    data = load_dataset(
        dataset, data_dir, config["image_shape"], config["num_timesteps"], cache_dir
    )
    _, eval_map = preprocessors(Recipe.from_preset(preset), model, 0, augment=False)
    return data, eval_map


def test_batch(preset, model, dataset, data_dir=None, num_images=16, cache_dir=None):
    """The first `num_images` test examples of `dataset`, preprocessed for `model`."""
    data, eval_map = _test_split(preset, model, dataset, data_dir, cache_dir)
    batches = data.test.take(num_images).batch(num_images).map(eval_map)
    images = [np.asarray(x) for x, _ in batches]
    if not images or len(images[0]) == 0:
        raise ValueError(f"The test split of {dataset} is empty: nothing to analyse.")
    return images[0]


def test_batches(
    preset, model, dataset, batch_size, data_dir=None, num_images=None, cache_dir=None
):
    """Preprocessed `(inputs, one-hot labels)` test batches of `dataset`: the
    batches `keras-spikformer evaluate` scores, or the first `num_images`."""
    from keras_spikformer.training.trainer import _test_pipeline

    data, eval_map = _test_split(preset, model, dataset, data_dir, cache_dir)
    if num_images is None:
        return _test_pipeline(data, batch_size, eval_map)
    return data.test.take(num_images).batch(batch_size).map(eval_map)


def is_report_directory(directory):
    """Whether `directory` holds an analysis report and nothing else."""
    return is_owned_directory(
        directory, ["report.json"], ["report.json", "report.md", "*.png"]
    )


# `atomic_directory(..., owned=REPORT)`: only a report replaces a report.
REPORT = ("keras-spikformer analysis report", is_report_directory)


def analyze(model, images, output, overwrite=False):
    """Writes `report.json`, `report.md` and PNG plots for `model` on `images`.

    The plots: firing rates, a spike raster of the first attention query
    neuron (the first neuron if there is none) and, for Spikformer models,
    the attention maps of block 0.

    Args:
        model: a classifier of the zoo's families.
        images: a preprocessed batch the model takes.
        output: directory to write (atomically).
        overwrite: replace an existing report directory (never another
            directory: a preset or a folder of your files is refused).

    Returns:
        The `EnergyReport`.
    """
    report = energy_report(model, images)
    first = images[:1]
    with atomic_directory(output, overwrite=overwrite, owned=REPORT) as tmp:
        write_json(tmp / "report.json", report.to_dict())
        (tmp / "report.md").write_text(report.to_markdown() + "\n")
        plot_firing_rates(report.firing_rates, tmp / "firing_rates.png")
        names = list(neuron_layer_names(model))
        raster = next((n for n in names if n.endswith(".q_lif")), names[0])
        plot_spike_raster(model, first, raster, tmp / "spike_raster.png")
        if is_spikformer(model):
            plot_attention_maps(
                model, first, tmp / "attention_maps.png", block=0, head=0
            )
    return report
