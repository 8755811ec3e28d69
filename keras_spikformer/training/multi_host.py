"""Joining a multi-host JAX cluster before building models."""

import os

import keras

_MULTI_HOST_ENV = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def initialize_multi_host(job_addresses=None, num_processes=None, process_id=None):
    """Joins this process to a multi-host JAX cluster; call it before anything else.

    A thin wrapper over `keras.distribution.initialize` (which calls
    `jax.distributed.initialize`, then agrees on one random seed across
    processes). Run the same script on every host; afterwards
    `keras.distribution.list_devices()` lists the devices of ALL hosts and
    `distribution_for(...)` spans them. Each host's `fit` input is split
    across processes by Keras (`auto_shard_dataset`), so feed the same
    global-batch `tf.data` pipeline everywhere.

    Arguments left `None` are read by Keras from the environment:
    `KERAS_DISTRIBUTION_JOB_ADDRESSES` (comma-separated `host:port` of every
    process, or just the coordinator's, process 0), `KERAS_DISTRIBUTION_NUM_PROCESSES`
    and `KERAS_DISTRIBUTION_PROCESS_ID` (`0 .. num_processes - 1`). On Cloud TPU
    all three may stay unset; JAX finds the cluster itself.

    Args:
        job_addresses: str or `None`, e.g. `"10.0.0.1:1234,10.0.0.2:1234"`.
        num_processes: int or `None`.
        process_id: int or `None`.

    Example:
    >>> # on host i of 2, before building any model:
    >>> initialize_multi_host("10.0.0.1:1234", num_processes=2, process_id=i)
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            "initialize_multi_host starts JAX multi-process runs; the active "
            f"backend is {backend!r}. Use KERAS_BACKEND=jax (TensorFlow's multi-"
            "worker training uses tf.distribute.MultiWorkerMirroredStrategy and "
            "TF_CONFIG, which this package does not wire)."
        )
    env = {name: os.environ.get(name) for name in _MULTI_HOST_ENV}
    if num_processes is None and env["KERAS_DISTRIBUTION_NUM_PROCESSES"]:
        num_processes = env["KERAS_DISTRIBUTION_NUM_PROCESSES"]
    if process_id is None and env["KERAS_DISTRIBUTION_PROCESS_ID"]:
        process_id = env["KERAS_DISTRIBUTION_PROCESS_ID"]
    if job_addresses is None:
        job_addresses = env["KERAS_DISTRIBUTION_JOB_ADDRESSES"]
    num_processes = _optional_int(num_processes, "num_processes")
    process_id = _optional_int(process_id, "process_id")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
    if process_id is not None:
        if num_processes is None:
            raise ValueError(
                f"process_id={process_id} needs num_processes (argument or "
                "KERAS_DISTRIBUTION_NUM_PROCESSES)."
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(
                f"process_id must be in 0..{num_processes - 1} for "
                f"num_processes={num_processes}, got {process_id}."
            )
    if job_addresses is not None:
        addresses = [a.strip() for a in str(job_addresses).split(",")]
        if not all(addresses):
            raise ValueError(
                f"job_addresses {job_addresses!r} has an empty entry; expected "
                "'host:port' or a comma-separated list of them."
            )
        if len(addresses) > 1 and num_processes not in (None, len(addresses)):
            raise ValueError(
                f"job_addresses lists {len(addresses)} processes but "
                f"num_processes is {num_processes}; list every process or only "
                "the coordinator (process 0)."
            )
        job_addresses = ",".join(addresses)
    keras.distribution.initialize(job_addresses, num_processes, process_id)


def _optional_int(value, name):
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int, got {value!r}.") from None
