"""CPU threads for training on the torch backend beside a tf.data input pipeline."""

import os

import keras


def leave_a_core_for_input():
    """Caps torch's CPU threads at one less than the cores (at least 1).

    torch's OpenMP workers busy-wait for each other at the end of every eager
    operation. When another thread holds a core (the tf.data pipeline that
    feeds `train`, or other processes), every operation waits for a
    descheduled worker: on a 2-core machine one epoch of the digits quick
    start took 160 s with 2 threads and ~20 s with 1. Does nothing on other
    backends, with a GPU, when `OMP_NUM_THREADS` is set (the user's choice),
    or when torch already uses fewer threads.

    Returns:
        The number of threads torch uses now, or `None` when not applicable.

    Example:
    >>> leave_a_core_for_input()  # on a 2-core machine with KERAS_BACKEND=torch
    1
    """
    if keras.backend.backend() != "torch" or "OMP_NUM_THREADS" in os.environ:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    threads = max(1, (os.cpu_count() or 1) - 1)
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()
