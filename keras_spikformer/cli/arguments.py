"""Argument types that check ranges while the command line is parsed.

Each is an argparse `type=`: a bad value ends in argparse's usage message and
exit code 2 before anything heavy is imported. Nothing here imports Keras.
"""

import argparse
import math

__all__ = [
    "class_count",
    "image_size",
    "non_negative_int",
    "positive_float",
    "positive_int",
]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (batch size, epochs, heads, time steps, images)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (random seed)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def class_count(text: str) -> int:
    """A class count: a classifier needs at least 2 classes."""
    value = _int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"a classifier needs at least 2 classes, got {text}"
        )
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rate, attention scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def image_size(text: str) -> tuple[int, int]:
    """`224` or `224x224` -> `(224, 224)`."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"takes N or HxW, got {text!r}")
    sizes = [int(p) for p in parts] * (3 - len(parts))
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return tuple(sizes[:2])
