"""Throughput and peak memory of a family's reference model (PyTorch, SpikingJelly).

Runs the authors' code of Spikformer, Spike-driven Transformer (V1),
QKFormer or Meta-SpikeFormer (SDT V2) from a checkout the user points to
(nothing of it is copied into this repository), built to match one of our zoo
presets (`reference_models.py`; the family follows from the preset) with its
trainable parameter count checked against ours, and timed with the same batch,
modes and JSON record as `throughput.py`, plus `implementation: "reference"`.
The references build SpikingJelly 0.0.0.0.12's neurons with
`backend='cupy'`; on the CPU they are switched to `backend='torch'` (same
equations; CuPy needs a GPU). `--device cuda --neuron-backend cupy` runs them
as their users do on a GPU.

Usage (in a separate environment with torch, spikingjelly==0.0.0.0.12 and the
family's timm: 0.5.4 for Spikformer, 0.6.12 for the others; see
benchmarks/README.md):
    python benchmarks/reference_throughput.py --reference-dir ~/QKFormer \\
        --preset qkformer_4_384_cifar10 --mode train --batch-size 32 \\
        [--steps 5] [--warmup 2] [--threads N] --json results/reference_train.json

train: one AdamW step (lr 1e-4) on cross-entropy, forward + backward +
update, then `functional.reset_net`. infer: eval mode, forward under
`torch.no_grad()`, then `functional.reset_net`. Images/second is the median
of the timed steps after the first step and the warm-up steps.
"""

import argparse
import contextlib
import hashlib
import importlib.util
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import git_commit, machine_info, write_record  # noqa: E402
from reference_models import (  # noqa: E402
    FAMILY_NAMES,
    check_parameter_count,
    counted_parameters,
    read_preset,
    reference_model,
)
from throughput import peak_rss_mb, time_steps  # noqa: E402

SPIKINGJELLY_VERSION = "0.0.0.0.12"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference-dir", required=True, help="a checkout of the family's reference"
    )
    parser.add_argument(
        "--preset", default="spikformer_4_384_cifar10", help="zoo name or directory"
    )
    parser.add_argument(
        "--family",
        choices=FAMILY_NAMES,
        help="optional: must be the preset's family (it is inferred from it)",
    )
    parser.add_argument("--mode", choices=["train", "infer"], required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps after the first"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--neuron-backend",
        choices=["torch", "cupy"],
        default="torch",
        help="SpikingJelly backend of the neurons (cupy: the references' own, "
        "needs --device cuda and cupy)",
    )
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch-size and --steps must be >= 1, --warmup >= 0")
    if args.neuron_backend == "cupy" and args.device != "cuda":
        parser.error("--neuron-backend cupy runs CUDA kernels: add --device cuda")
    return args


def resolve(args):
    """`(config, task, metadata, Reference)` of `--preset`, `--family` checked."""
    config, task, meta = read_preset(args.preset)
    ref = reference_model(config, task)
    if args.family and args.family != ref.family:
        raise SystemExit(
            f"--family {args.family} does not match preset {args.preset!r}, a "
            f"{ref.family} preset; leave --family out (the preset decides it)."
        )
    return config["config"], task, meta, ref


def check_checkout(reference_dir, ref):
    """The reference's model file for `ref`, or a clear exit."""
    root = Path(reference_dir).expanduser()
    hint = f"get one with `git clone https://github.com/{ref.repository}`"
    if not root.is_dir():
        raise SystemExit(f"--reference-dir {root} is not a directory; {hint}.")
    model_py = root / ref.source
    text = model_py.read_text() if model_py.is_file() else ""
    if f"class {ref.factory}(" not in text:
        raise SystemExit(
            f"{root} is not a checkout of {ref.repository}: {model_py} is missing "
            f"or defines no {ref.factory}; {hint}."
        )
    return model_py


def check_dependencies(ref):
    """Imports torch, spikingjelly, timm; exits naming what is missing."""
    from importlib import metadata

    wanted = [
        ("torch", "torch"),
        ("spikingjelly", f"spikingjelly=={SPIKINGJELLY_VERSION}"),
    ]
    wanted += [("timm", f"timm=={ref.timm}"), ("numpy", "numpy")]
    missing = [
        pip for module, pip in wanted if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise SystemExit(
            f"{sys.executable} lacks {', '.join(missing)}: the reference needs its "
            f"own environment, e.g. `python -m venv refvenv && refvenv/bin/pip "
            f"install torch {' '.join(missing)} einops torchinfo` "
            "(benchmarks/README.md)."
        )
    versions = {m: metadata.version(m) for m in ("torch", "spikingjelly", "timm")}
    # timm 0.6.12 does not import on Python 3.11 (0.6.13 fixed that): the
    # release series is what matters.
    for name, want, got in (
        ("spikingjelly", SPIKINGJELLY_VERSION, versions["spikingjelly"]),
        ("timm", ref.timm.rsplit(".", 1)[0], versions["timm"].rsplit(".", 1)[0]),
    ):
        if got != want:
            print(
                f"warning: {name} {versions[name]}; the {ref.family} reference was "
                f"written for {name} {ref.timm if name == 'timm' else want}",
                file=sys.stderr,
            )
    return versions


_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_library = []  # keeps the shim's op definitions alive


def _import_timm():
    try:
        importlib.import_module("timm")
    except ValueError as error:  # timm 0.6.12's dataclasses on Python >= 3.11
        raise SystemExit(
            f"timm does not import on Python {sys.version.split()[0]} ({error}); "
            "install timm==0.6.13 (the same models, fixed for Python 3.11)."
        ) from error


def import_timm():
    """Imports timm; returns True if torchvision's compiled ops needed a shim.

    timm imports torchvision, and torchvision 0.28 registers fake kernels for
    `torchvision::nms`/`qnms` even when its compiled ops failed to load (a CUDA
    torchvision beside a CPU torch), which fails at import. The reference never
    calls those ops, so then the two schemas are defined (no kernels) and the
    import retried; the record says so (`torchvision_shim`).
    """
    import torch

    if "timm" in sys.modules:
        return bool(_torchvision_library)
    try:
        _import_timm()
        return False
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        reason = str(error)
    for name in list(sys.modules):
        if name.split(".")[0] in ("torchvision", "timm"):
            del sys.modules[name]
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _TORCHVISION_SCHEMAS:
        library.define(schema)
    _torchvision_library.append(library)
    _import_timm()
    print(
        f"note: torchvision's compiled ops do not load with this torch ({reason}); "
        "defined the nms/qnms schemas it registers at import (unused here). "
        "Install the torchvision built for your torch to avoid this.",
        file=sys.stderr,
    )
    return True


@contextlib.contextmanager
def _cupy_backend_accepted():
    """Lets `MultiStepLIFNode(backend='cupy')` be built without CuPy."""
    from spikingjelly.clock_driven import neuron

    original = neuron.check_backend
    neuron.check_backend = lambda backend: original(
        "torch" if backend == "cupy" else backend
    )
    try:
        yield
    finally:
        neuron.check_backend = original


def build_reference(model_py, ref, root, neuron_backend="torch"):
    """The reference model, its neurons on `neuron_backend`.

    Returns:
        `(model, number of SpikingJelly neurons)`.
    """
    from spikingjelly.clock_driven.neuron import BaseNode

    import_timm()
    # The checkout's own imports (SDT's `from module import *`) resolve from
    # its root and the model file's folder.
    for folder in (str(model_py.parent), str(Path(root).expanduser())):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    name = f"reference_{ref.family}"
    spec = importlib.util.spec_from_file_location(name, model_py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # timm's register_model looks the module up
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise SystemExit(
            f"Importing {model_py} failed ({error}); install what it names (einops, "
            f"torchinfo) or the timm it was written for (timm=={ref.timm})."
        ) from error
    accept = (
        _cupy_backend_accepted if neuron_backend == "torch" else contextlib.nullcontext
    )
    with accept():
        model = getattr(module, ref.factory)(**ref.kwargs)
    for key, value in ref.attributes.items():
        setattr(model, key, value)
    neurons = [m for m in model.modules() if isinstance(m, BaseNode)]
    if not neurons:
        raise SystemExit(f"{model_py} built a model without SpikingJelly neurons.")
    for node in neurons:
        if hasattr(node, "backend"):
            node.backend = neuron_backend
    return model, len(neurons)


def logits_of(output):
    """The class logits of a reference forward (SDT returns `(x, hook)`,
    Meta-SpikeFormer with a distillation head `(x, x_kd)` in training)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def run(args):
    config, task, meta, ref = resolve(args)
    model_py = check_checkout(args.reference_dir, ref)
    versions = check_dependencies(ref)
    import numpy as np
    import torch
    from spikingjelly.clock_driven import functional

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torchvision_shim = import_timm()
    model, num_neurons = build_reference(
        model_py, ref, args.reference_dir, args.neuron_backend
    )
    params, unused = counted_parameters(
        ((n, p.numel()) for n, p in model.named_parameters() if p.requires_grad),
        ref.unused,
    )
    check_parameter_count(args.preset, meta.get("trainable_params"), params)
    device = torch.device(args.device)
    model.to(device)
    rng = np.random.default_rng(0)
    shape = (args.batch_size,) + tuple(ref.input_shape)
    x = torch.from_numpy(rng.normal(size=shape).astype("float32")).to(device)
    labels = rng.integers(0, task["num_classes"], args.batch_size)
    y = torch.from_numpy(labels).to(device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    if args.mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad()
            loss = loss_fn(logits_of(model(x)), y)
            loss.backward()
            optimizer.step()
            functional.reset_net(model)
            sync()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                logits_of(model(x)).cpu().numpy()
            functional.reset_net(model)

    first_seconds, times = time_steps(step, args.steps, args.warmup)
    machine = machine_info()
    record = {
        "preset": args.preset,
        "family": ref.family,
        "implementation": "reference",
        "backend": "torch",
        "mode": args.mode,
        "input": "arrays",
        "batch_size": args.batch_size,
        "dtype": "float32",
        "remat": False,
        "num_timesteps": config["num_timesteps"],
        "images_per_second": round(args.batch_size / statistics.median(times), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "step_seconds": [round(t, 4) for t in times],
        "compile_seconds": round(first_seconds, 2),
        "device": f"{machine['machine']} CPU x{machine['cpu_count']}",
        **machine,
        "threads": torch.get_num_threads(),
        **versions,  # torch, spikingjelly, timm
        "torchvision_shim": torchvision_shim,
        "neuron_backend": args.neuron_backend,
        "num_neurons": num_neurons,
        "trainable_params": params,
        "unused_params_left_out": unused,
        "reference_repository": ref.repository,
        "reference_model": ref.source,
        "reference_sha256": hashlib.sha256(model_py.read_bytes()).hexdigest()[:12],
        "xla_flags": "",
        "commit": git_commit(Path(args.reference_dir).expanduser()),
    }
    if args.device == "cuda":
        record["device"] = torch.cuda.get_device_name()
        record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return record


def main(argv=None):
    args = parse_args(argv)
    record = run(args)
    keys = ["preset", "implementation", "mode", "batch_size", "images_per_second"]
    keys += ["peak_rss_mb", "compile_seconds", "threads", "cpu_model"]
    for row in (keys, ["---"] * len(keys), [str(record[k]) for k in keys]):
        print("| " + " | ".join(row) + " |")
    if args.json:
        write_record(record, args.json)
    return record


if __name__ == "__main__":
    main()
