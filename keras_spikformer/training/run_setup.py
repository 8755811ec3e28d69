"""What `train` settles before any heavy work: its arguments, the run directory
and the epoch schedule.

A run directory is ours when it holds `run.json` (written when training
starts: preset, architecture, class count), `backup/` (an interrupted run) or
`metrics.json` (a finished one). `--resume` checks that `run.json` describes
the same model; `--epochs N` scales the recipe's whole schedule (warm-up,
cosine, cooldown, MixUp switch-off) to N epochs in total.
"""

import json
import math
from pathlib import Path

BACKUP_DIR = "backup"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
# The key that makes a `run.json` recognisably ours (any other run.json is not).
RUN_MARKER = "keras_spikformer_run"

__all__ = [
    "check_evaluate_output",
    "check_run_directory",
    "check_same_run",
    "check_train_arguments",
    "describe_schedule",
    "fit_schedule",
    "write_run_file",
]


def check_train_arguments(epochs, batch_size, learning_rate, num_classes):
    """Raises `ValueError` for a value `train` cannot use (None: the recipe's).

    Example:
    >>> check_train_arguments(epochs=0, batch_size=None, learning_rate=None,
    ...                       num_classes=None)  # raises: epochs must be >= 1
    """
    checks = (
        ("epochs", epochs, 1, int),
        ("batch_size", batch_size, 1, int),
        ("num_classes", num_classes, 2, int),
    )
    for name, value, least, kind in checks:
        if value is not None and (
            not isinstance(value, kind) or isinstance(value, bool) or value < least
        ):
            raise ValueError(f"`{name}` must be an integer >= {least}, got {value!r}.")
    if learning_rate is not None and not (
        isinstance(learning_rate, (int, float))
        and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise ValueError(
            f"`learning_rate` must be a positive number, got {learning_rate!r}."
        )


def check_run_directory(output, resume):
    """Refuses an `output` that holds a finished run, an interrupted run
    without `resume`, or files that are not a run of ours.

    Returns:
        `(output Path, backup Path, epoch to start from)`.
    """
    output = Path(output)
    backup = output / BACKUP_DIR
    if (output / METRICS_FILE).is_file():
        raise FileExistsError(
            f"{output} holds a finished run ({METRICS_FILE}); choose another --output."
        )
    if backup.is_dir() and not resume:
        raise FileExistsError(
            f"{output} holds an interrupted run; pass --resume to continue it or "
            "choose another --output."
        )
    if resume and not backup.is_dir():
        raise FileNotFoundError(f"--resume: {output} has no interrupted run to resume.")
    if output.is_file():
        raise FileExistsError(f"--output {output} is a file; give a directory.")
    found = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if found and not is_our_run_file(output / RUN_FILE) and not backup.is_dir():
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise FileExistsError(
            f"--output {output} is not empty ({shown}) and holds no keras-spikformer "
            "run; choose a new or empty directory so that nothing of yours is "
            "overwritten."
        )
    start = 0
    meta = backup / "training_metadata.json"
    if resume and meta.is_file():
        start = int(json.loads(meta.read_text())["epoch"])
    return output, backup, start


def is_our_run_file(path):
    """Whether `path` is a `run.json` that `train` wrote (it carries RUN_MARKER)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get(RUN_MARKER) == 1


def check_evaluate_output(output):
    """Refuses an `evaluate --output` that would replace results: a directory
    holding `metrics.json` (a finished training run or an earlier evaluation)
    or a training run of ours. Runs before any evaluation work.

    Example:
    >>> check_evaluate_output("runs/digits")  # raises: holds a training run
    """
    if output is None:
        return
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output} is a file; give a directory.")
    if (output / METRICS_FILE).exists():
        raise FileExistsError(
            f"--output {output} already holds {METRICS_FILE} (of a training run or an "
            "earlier evaluation), which evaluate would replace; choose another "
            f"--output, e.g. {output}/eval."
        )
    if is_our_run_file(output / RUN_FILE) or (output / BACKUP_DIR).is_dir():
        raise FileExistsError(
            f"--output {output} is a training run; evaluate writes its "
            f"{METRICS_FILE} elsewhere: choose another --output."
        )


def _describe_model(run):
    return f"preset {run['preset']!r} with {run['num_classes']} classes"


def check_same_run(output, resume, run):
    """With `resume`, refuses a model other than the one `output` was started
    with (compares `run` with the directory's `run.json`, when it has one)."""
    path = Path(output) / RUN_FILE
    if not resume or not path.is_file():
        return
    started = json.loads(path.read_text())
    keys = sorted(set(started["config"]) | set(run["config"]))
    diffs = [
        f"{k}: {started['config'].get(k)!r} -> {run['config'].get(k)!r}"
        for k in keys
        if started["config"].get(k) != run["config"].get(k)
    ]
    if started["num_classes"] != run["num_classes"]:
        diffs.insert(0, f"classes: {started['num_classes']} -> {run['num_classes']}")
    if diffs:
        raise ValueError(
            f"--resume: {output} was started with {_describe_model(started)}, but "
            f"this command asks for {_describe_model(run)} ({'; '.join(diffs[:4])}). "
            f"Resume with --preset {started['preset']} and the same --num-classes, "
            "or choose another --output to start a new run."
        )


def write_run_file(output, run):
    """Marks `output` as a run of ours (RUN_MARKER) and records what it trains."""
    data = {RUN_MARKER: 1, **run}
    (Path(output) / RUN_FILE).write_text(json.dumps(data, indent=2) + "\n")


def fit_schedule(recipe, epochs):
    """The recipe with its schedule scaled to `epochs` epochs in total.

    The recipe trains `recipe.epochs` cosine epochs (whose first
    `warmup_epochs` warm up) and `cooldown_epochs` more; each part, and the
    epoch at which MixUp stops, is scaled by `epochs / recipe.total_epochs()`.

    Example:
    >>> fit_schedule(Recipe.from_preset("spikformer_tiny_cifar"), 31).warmup_epochs
    2
    """
    check_train_arguments(epochs, None, None, None)
    scale = epochs / recipe.total_epochs()
    cooldown = min(round(recipe.cooldown_epochs * scale), epochs - 1)
    cosine = epochs - cooldown
    warmup = min(round(recipe.warmup_epochs * scale), cosine - 1)
    augment = dict(recipe.augment or {})
    if augment.get("mixup_off_epoch"):
        augment["mixup_off_epoch"] = max(1, round(augment["mixup_off_epoch"] * scale))
    return recipe.replace(
        epochs=cosine, warmup_epochs=warmup, cooldown_epochs=cooldown, augment=augment
    )


def describe_schedule(recipe, start_epoch=0):
    """One line: the epochs `fit` runs, and how the learning rate moves."""
    line = (
        f"schedule: {recipe.total_epochs()} epochs = {recipe.epochs} cosine "
        f"(the first {recipe.warmup_epochs} warm up) + {recipe.cooldown_epochs} "
        f"cooldown; lr peaks at {recipe.learning_rate:g}, ends at "
        f"{recipe.min_learning_rate:g}"
    )
    off = (recipe.augment or {}).get("mixup_off_epoch")
    if off:
        line += f"; MixUp/CutMix off from epoch {off}"
    if start_epoch:
        line += f"; resuming at epoch {start_epoch + 1}"
    return line
