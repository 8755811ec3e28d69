"""Range checks of every number in a training recipe (`recipe.json`).

A recipe comes with a preset, which may be downloaded: a NaN learning rate
would train pretrained weights into NaN and save them, a zero batch would
divide by zero deep in the schedule. `check_recipe_values` refuses such values
when the recipe is read or changed, naming the file, the field and the range.
"""

import math
import numbers

__all__ = ["check_recipe_values"]

# field: (kind, lowest, highest, whether the lowest itself is allowed[, whether
# the highest is]). Kind "number" takes ints and floats, "int" integers only;
# `None` = unbounded.
_TOP_LEVEL = {
    "learning_rate": ("number", 0, None, False),
    "weight_decay": ("number", 0, 1, True),
    "min_learning_rate": ("number", 0, None, True),
    "warmup_learning_rate": ("number", 0, None, True),
    "label_smoothing": ("number", 0, 1, True, False),
    "epochs": ("int", 1, None, True),
    "global_batch_size": ("int", 1, None, True),
    "warmup_epochs": ("int", 0, None, True),
    "cooldown_epochs": ("int", 0, None, True),
}
_FLAGS = ("trust_clip", "warmup_prefix", "mixed_precision")
_SECTIONS = {
    "augment": {
        "mixup_alpha": ("number", 0, None, True),
        "cutmix_alpha": ("number", 0, None, True),
        "mixup_prob": ("number", 0, 1, True),
        "mixup_switch_prob": ("number", 0, 1, True),
        "mixup_off_epoch": ("int", 0, None, True),
        "random_erasing": ("number", 0, 1, True),
        "random_crop_padding": ("int", 0, None, True),
    },
    "rand_augment": {
        "magnitude": ("number", 0, 30, True),
        "magnitude_std": ("number", 0, None, True),
        "num_ops": ("int", 0, None, True),
        "prob": ("number", 0, 1, True),
    },
    "eval": {"crop_ratio": ("number", 0, 1, False)},
    "frames": {
        "num_frames": ("int", 1, None, True),
        "train_split": ("number", 0, 1, False),
    },
    "loss": {"lamb": ("number", 0, None, True), "means": ("number", None, None, True)},
}
# Lists of numbers: field -> (length or None, lowest, lowest allowed?).
_LISTS = {
    "augment.random_resized_crop_scale": (2, 0, False),
    "augment.random_resized_crop_ratio": (2, 0, False),
    "normalize.mean": (None, None, True),
    "normalize.std": (None, 0, False),
    "frames.resize": (2, 1, True),
}


def _where(source):
    return f"{source}" if source else "the recipe (recipe.json, in memory)"


def _range(kind, low, high, low_ok, high_ok=True):
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_ok else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_ok else '<'} {high}")
    what = "an integer" if kind == "int" else "a finite number"
    return what + (" " + " and ".join(parts) if parts else "")


def _check(source, field, value, rule):
    kind, low, high, low_ok, high_ok = (*rule, True)[:5]
    if value is None and field in ("warmup_learning_rate", "augment.mixup_off_epoch"):
        return  # "not set": the documented defaults apply
    integral = isinstance(value, numbers.Integral)
    ok = not isinstance(value, bool) and (
        integral if kind == "int" else isinstance(value, numbers.Real)
    )
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low if low_ok else value > low
    if ok and high is not None:
        ok = value <= high if high_ok else value < high
    if not ok:
        raise ValueError(
            f"{_where(source)}: `{field}` must be "
            f"{_range(kind, low, high, low_ok, high_ok)}; "
            f"got {value!r}. Fix the value in the recipe (see zoo/*/recipe.json "
            "for the reference values)."
        )


def _check_list(source, field, value, rule):
    length, low, low_ok = rule
    items = value if isinstance(value, (list, tuple)) else None
    ok = items is not None and (length is None or len(items) == length) and items
    for item in items or ():
        ok = ok and not isinstance(item, bool) and isinstance(item, numbers.Real)
        ok = ok and math.isfinite(item)
        if ok and low is not None:
            ok = item >= low if low_ok else item > low
    if ok and length == 2 and not field.endswith("resize"):
        ok = items[0] <= items[1]  # a (low, high) range
    if not ok:
        size = f"{length} " if length else ""
        bound = "" if low is None else f" {'>=' if low_ok else '>'} {low}"
        order = " (low <= high)" if length == 2 else ""
        raise ValueError(
            f"{_where(source)}: `{field}` must be a list of {size}finite "
            f"numbers{bound}{order}; got {value!r}. Fix the value in the recipe."
        )


def check_recipe_values(recipe):
    """Raises `ValueError` for a recipe number that is not finite or out of range.

    Checks the top-level numbers (learning rates, weight decay, label
    smoothing, epochs, batch), the flags, and the numbers of the `augment`,
    `rand_augment`, `eval`, `frames`, `normalize` and `loss` sections.

    Args:
        recipe: a `Recipe`.

    Raises:
        ValueError: naming the recipe file, the field, the valid range and
            the value found.

    Example:
    >>> check_recipe_values(Recipe.from_preset("spikformer_tiny_cifar"))
    """
    source = recipe.source
    for field, rule in _TOP_LEVEL.items():
        _check(source, field, getattr(recipe, field), rule)
    for field in _FLAGS:
        if not isinstance(getattr(recipe, field), bool):
            raise ValueError(
                f"{_where(source)}: `{field}` must be true or false; got "
                f"{getattr(recipe, field)!r}. Fix the value in the recipe."
            )
    sections = {
        "augment": recipe.augment,
        "rand_augment": (recipe.augment or {}).get("rand_augment"),
        "eval": recipe.eval,
        "frames": recipe.frames,
        "normalize": recipe.normalize,
        "loss": recipe.extras.get("loss"),
    }
    for section, values in sections.items():
        if not values and not isinstance(values, (list, str)):
            continue  # absent, null, {} or false: the section is not used
        prefix = "augment.rand_augment" if section == "rand_augment" else section
        if not isinstance(values, dict):
            raise ValueError(
                f"{_where(source)}: `{prefix}` must be a JSON object; got "
                f"{values!r}. Fix the recipe."
            )
        for key, rule in _SECTIONS.get(section, {}).items():
            if key in values:
                _check(source, f"{prefix}.{key}", values[key], rule)
        for field, rule in _LISTS.items():
            head, key = field.split(".")
            if head == section and key in values:
                _check_list(source, field, values[key], rule)
