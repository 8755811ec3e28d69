"""The fixed, seeded train/test split of CIFAR10-DVS (it has no official one).

`cifar10dvs_split.json`, shipped with the package, holds for each class an
order of the 1000 published recordings (`cifar10_<class>_<i>.aedat`, stored
as the indices `i`): `seeded_order` of the names with seed 0 (made by
`write_split_file`). Files are taken
in that order: the first `ceil(n * train_fraction)` of a class (90% by
default) train, the rest test, so the split is the same on every machine
and numpy version. `split_seed=S` draws another order of the files present
with seed `S` (the CLI's `--split-seed`). Files the shipped order does not
name follow it, sorted.

`event_frames_dataset(..., file_order=None)` keeps the previous rule (names
sorted as strings, as Spikformer's SpikingJelly recipe); the CLI passes
`file_order(split_seed)`.
"""

import functools
import json
import zlib
from pathlib import Path

import numpy as np

SPLIT_FILE = Path(__file__).with_name("cifar10dvs_split.json")
PUBLISHED_PER_CLASS = 1000
SHIPPED_SEED = 0


def published_names(class_name):
    """The published file names of one class, `cifar10_<class>_0..999.aedat`."""
    return [f"cifar10_{class_name}_{i}.aedat" for i in range(PUBLISHED_PER_CLASS)]


def seeded_order(class_name, names, seed):
    """`names` sorted, then permuted by `default_rng([seed, crc32(class_name)])`.

    Each class gets its own permutation, fixed by `seed`.

    Example:
    >>> seeded_order("cat", ["b", "a", "c"], 0)  # doctest: +SKIP
    ['c', 'a', 'b']
    """
    names = sorted(names)
    rng = np.random.default_rng([seed, zlib.crc32(class_name.encode())])
    return [names[i] for i in rng.permutation(len(names))]


@functools.lru_cache(maxsize=1)
def shipped_orders():
    """`{class: [index, ...]}` read from `cifar10dvs_split.json`."""
    with open(SPLIT_FILE) as f:
        data = json.load(f)
    return {c: [int(i) for i in order] for c, order in data["orders"].items()}


def file_order(split_seed=None):
    """A `(class_name, file_names) -> ordered names` for `event_frames_dataset`.

    Args:
        split_seed: None for the shipped order; an int for a fresh order of
            the files present, drawn with that seed.

    Returns:
        The ordering function; train takes the head of each class's order.

    Example:
    >>> order = file_order()
    >>> order("cat", ["cifar10_cat_0.aedat", "cifar10_cat_1.aedat"])  # doctest: +SKIP
    ['cifar10_cat_1.aedat', 'cifar10_cat_0.aedat']
    """
    if split_seed is not None:
        return lambda class_name, names: seeded_order(
            class_name, names, int(split_seed)
        )

    def shipped(class_name, names):
        present = set(names)
        known = [
            n
            for n in (
                f"cifar10_{class_name}_{i}.aedat"
                for i in shipped_orders().get(class_name, ())
            )
            if n in present
        ]
        return known + sorted(present - set(known))

    return shipped


def write_split_file(path=SPLIT_FILE, seed=SHIPPED_SEED):
    """Writes the shipped split file (how `cifar10dvs_split.json` was made)."""
    from keras_spikformer.data.events import CIFAR10DVS_CLASS_NAMES

    orders = {}
    for c in CIFAR10DVS_CLASS_NAMES:
        index = {n: i for i, n in enumerate(published_names(c))}
        orders[c] = [index[n] for n in seeded_order(c, published_names(c), seed)]
    text = json.dumps(
        {
            "about": "CIFAR10-DVS has no official split. Per class, the published "
            "recordings cifar10_<class>_<i>.aedat in a fixed order (indices i): "
            "the first 90% train, the rest test. Made by keras_spikformer.data."
            f"cifar10dvs_split.write_split_file(seed={seed}).",
            "seed": seed,
            "orders": orders,
        },
        separators=(",", ":"),
    )
    Path(path).write_text(text + "\n")
