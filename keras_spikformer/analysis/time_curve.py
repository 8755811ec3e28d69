"""Accuracy against time steps: the running prediction of a stream, step by step.

One pass through a stream per batch gives the top-1 accuracy of the running
mean logits after every step `t = 1..T` (the accuracy the model would have
if every sequence stopped at `t`) and, from the same pass, the accuracy and
mean steps of early-exit rules (`keras_spikformer.streaming.EarlyExit`).
Only counts are accumulated, so memory does not grow with the dataset.
"""

import numpy as np

from keras_spikformer.streaming.early_exit import (
    EarlyExit,
    ExitTracker,
    padded_batches,
    prepare_inputs,
    stream_steps,
)

TITLE = "Accuracy against time steps"

# What `keras-spikformer analyze --time-curve` measures unless told otherwise.
DEFAULT_RULES = (
    "max_probability:0.9",
    "max_probability:0.99",
    "margin:0.5",
    "margin:0.9",
)


def time_curve(
    model, data, rules=DEFAULT_RULES, batch_size=32, num_steps=None, verbose=0
):
    """Top-1 accuracy after each step, and early-exit accuracy and mean steps.

    Args:
        model: a classifier of this package that can stream.
        data: `(x, labels)` arrays (raw images are preprocessed as by
            `predict`; frames `[N, T, H, W, 2]` feed frame `t` at step `t`),
            or an iterable of `(x, labels)` batches of model-ready inputs (a
            batched `tf.data.Dataset`). Labels are class indices or one-hot.
        rules: early-exit rules (anything `EarlyExit.get` takes).
        batch_size: int, the stream's batch size (batches of an iterable
            larger than it are refused; smaller ones are padded).
        num_steps: int, steps per sample; defaults to the model's
            `num_timesteps`.
        verbose: 0 or 1 (a progress bar over the batches).

    Returns:
        dict: `num_examples`, `num_steps`, `accuracy` (list, entry `t - 1` is
        the accuracy after step `t`), `early_exit` (per rule: `rule`,
        `threshold`, `min_steps`, `accuracy`, `mean_steps`, `exited_early`,
        the fraction that stopped before the last step).

    Example:
    >>> curve = time_curve(model, (images, labels), rules=[0.9, "margin:0.5"])
    >>> curve["accuracy"][-1]  # what model.evaluate reports
    """
    import keras

    rules = [EarlyExit.get(rule) for rule in rules]
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        x, labels = data
        x, frames, num_steps = prepare_inputs(model, x, num_steps)
        labels = _class_indices(labels)
        if len(labels) != len(x):
            raise ValueError(
                f"Got {len(x)} inputs but {len(labels)} labels; pass one label each."
            )
        batch_size = int(min(batch_size, len(x)))
        batches = _array_batches(x, labels, batch_size)
        total = -(-len(x) // batch_size)
    else:
        frames = len(model.inputs[0].shape) == 5
        num_steps = int(num_steps or model.backbone.num_timesteps)
        batches = _padded_iterable(data, batch_size)
        total = _length(data)
    for rule in rules:
        if rule.min_steps > num_steps:
            raise ValueError(
                f"{rule!r}: min_steps is more than the {num_steps} steps run."
            )
    stream = model.stream(batch_size)
    correct = np.zeros(num_steps, dtype="int64")
    exit_correct = np.zeros(len(rules), dtype="int64")
    exit_steps = np.zeros(len(rules), dtype="int64")
    exit_early = np.zeros(len(rules), dtype="int64")
    count = 0
    progress = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    for batch, labels in batches:
        size = len(labels)
        trackers = [ExitTracker(rule, size) for rule in rules]
        for t, mean in stream_steps(stream, batch, num_steps, frames):
            correct[t - 1] += int(np.sum(np.argmax(mean[:size], -1) == labels))
            for tracker in trackers:
                tracker.update(mean, t)
        for i, tracker in enumerate(trackers):
            logits, steps = tracker.finish(mean, num_steps)
            exit_correct[i] += int(np.sum(np.argmax(logits, -1) == labels))
            exit_steps[i] += int(np.sum(steps))
            exit_early[i] += int(np.sum(steps < num_steps))
        count += size
        if progress is not None:
            progress.add(1)
    if count == 0:
        raise ValueError("The data hold no examples: nothing to measure.")
    return {
        "num_examples": count,
        "num_steps": num_steps,
        "accuracy": [float(c) / count for c in correct],
        "early_exit": [
            {
                **rule.get_config(),
                "accuracy": float(exit_correct[i]) / count,
                "mean_steps": float(exit_steps[i]) / count,
                "exited_early": float(exit_early[i]) / count,
            }
            for i, rule in enumerate(rules)
        ],
    }


def _length(batches):
    try:
        return len(batches)  # a tf.data.Dataset of known cardinality
    except TypeError:
        return None


def _class_indices(labels):
    labels = np.asarray(labels)
    if labels.ndim == 2:  # one-hot (or label-smoothed) rows
        return np.argmax(labels, axis=-1)
    if labels.ndim != 1:
        raise ValueError(
            f"Labels must be class indices [N] or one-hot rows [N, classes]; got "
            f"shape {labels.shape}."
        )
    return labels.astype("int64")


def _array_batches(x, labels, batch_size):
    starts = range(0, len(x), batch_size)
    for start, (batch, size) in zip(starts, padded_batches(x, batch_size), strict=True):
        yield batch, labels[start : start + size]


def _padded_iterable(batches, batch_size):
    """`(batch padded to batch_size, labels)` from an iterable of batches."""
    for x, labels in batches:
        x = np.asarray(x, dtype="float32")
        if len(x) > batch_size:
            raise ValueError(
                f"A batch of {len(x)} is larger than batch_size={batch_size}; batch "
                f"the data by at most {batch_size} or raise batch_size."
            )
        (batch, _), *_ = padded_batches(x, batch_size)
        yield batch, _class_indices(labels)


def plot_time_curve(curve, path, title=TITLE, dpi=100):
    """Accuracy after each step (line) and each early-exit rule (points at
    their mean steps).

    Args:
        curve: a `time_curve` result.
        path: str or path of the PNG to write.
        title: str.
        dpi: int, pixels per inch (the figure is 7 x 4.5 inches).

    Returns:
        str, the path written.

    Example:
    >>> plot_time_curve(time_curve(model, (x, y)), "time_curve.png")
    """
    from keras_spikformer.analysis.plots import _figure, _save

    steps = np.arange(1, curve["num_steps"] + 1)
    accuracy = 100.0 * np.asarray(curve["accuracy"])
    figure = _figure((7, 4.5), dpi)
    ax = figure.add_subplot()
    ax.plot(steps, accuracy, "o-", color="tab:blue", label="stop every sample at t")
    markers = {"max_probability": "s", "margin": "^"}
    for point in curve["early_exit"]:
        rule = EarlyExit.from_config(
            {k: point[k] for k in ("rule", "threshold", "min_steps")}
        )
        ax.plot(
            point["mean_steps"],
            100.0 * point["accuracy"],
            markers[rule.rule],
            linestyle="none",
            label=f"early exit, {rule.describe()}",
        )
    ax.set_xlabel("time steps (mean steps for early exit)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xticks(steps)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{title} ({curve['num_examples']} examples)")
    figure.tight_layout()
    return _save(figure, path, dpi)


def is_time_curve_directory(directory):
    """Whether `directory` holds a time curve and nothing else."""
    from keras_spikformer.io_utils import is_owned_directory

    return is_owned_directory(
        directory, ["time_curve.json"], ["time_curve.json", "time_curve.png"]
    )


# `atomic_directory(..., owned=TIME_CURVE)`: only a time curve replaces one.
TIME_CURVE = ("keras-spikformer time curve", is_time_curve_directory)


def write_time_curve(curve, output, overwrite=False, title=None):
    """Writes `output/time_curve.json` and `output/time_curve.png` (atomically).

    Example:
    >>> write_time_curve(time_curve(model, (x, y)), "curve/")
    """
    from keras_spikformer.io_utils import atomic_directory, write_json

    with atomic_directory(output, overwrite=overwrite, owned=TIME_CURVE) as tmp:
        write_json(tmp / "time_curve.json", curve)
        plot_time_curve(curve, tmp / "time_curve.png", title=title or TITLE)
    return output
