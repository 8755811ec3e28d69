"""Throughput and peak memory of the reference Spikformer (PyTorch, SpikingJelly).

Runs the reference code of ZK-Zhou/spikformer from a checkout the user points
to (nothing of it is copied into this repository), built to match one of our
zoo presets, with the same batch, modes, timing and JSON record as
`throughput.py`, plus `implementation: "reference"`. SpikingJelly 0.0.0.0.12's
`MultiStepLIFNode` is built with the reference's `backend='cupy'` argument and
then switched to `backend='torch'` (same equations; CuPy needs a GPU).

Usage (in a separate environment with torch, spikingjelly==0.0.0.0.12,
timm==0.5.4; see benchmarks/README.md):
    python benchmarks/reference_throughput.py --reference-dir ~/spikformer \\
        --preset spikformer_4_384_cifar10 --mode train --batch-size 32 \\
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
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine_info import git_commit, machine_info, write_record  # noqa: E402
from throughput import peak_rss_mb  # noqa: E402

ZOO = Path(__file__).resolve().parent.parent / "zoo"
SPIKINGJELLY_VERSION = "0.0.0.0.12"
CLONE_HINT = "get one with `git clone https://github.com/ZK-Zhou/spikformer`"
# Neuron options the reference hard-codes; a preset that changes one has no
# reference counterpart.
REFERENCE_NEURON = {
    "tau": 2.0,
    "v_threshold": 1.0,
    "attention_v_threshold": 0.5,
    "v_reset": 0.0,
    "decay_input": True,
    "detach_reset": True,
    "surrogate": "sigmoid",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference-dir", required=True, help="a checkout of ZK-Zhou/spikformer"
    )
    parser.add_argument(
        "--preset", default="spikformer_4_384_cifar10", help="zoo name or directory"
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
    parser.add_argument("--json", help="write the record here")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch-size and --steps must be >= 1, --warmup >= 0")
    return args


def read_preset(preset):
    """`(backbone config, num_classes)` of a Spikformer zoo preset or directory."""
    path = Path(preset) if os.path.isdir(preset) else ZOO / preset
    if not (path / "config.json").is_file():
        names = sorted(p.name for p in ZOO.iterdir() if p.name.startswith("spikf"))
        raise SystemExit(
            f"No preset {preset!r}: {path / 'config.json'} does not exist. "
            f"Pass a zoo name ({', '.join(names)}) or a preset directory."
        )
    config = json.loads((path / "config.json").read_text())
    if config.get("class_name") != "SpikformerBackbone":
        raise SystemExit(
            f"Preset {preset!r} is a {config.get('class_name')}; the reference "
            "code is Spikformer's, so pass a spikformer_* preset."
        )
    task = path / "task.json"
    classes = (
        json.loads(task.read_text())["config"]["num_classes"] if task.is_file() else 0
    )
    if not classes:
        raise SystemExit(f"Preset {preset!r} has no classifier (task.json).")
    return config["config"], classes


def reference_variant(config, num_classes):
    """Which reference model.py matches the preset, and its constructor kwargs.

    Returns:
        `(folder, kwargs)`: "cifar10" (Linear q/k/v with bias, T argument),
        "imagenet" (bias-free 1x1 convs, T fixed at 4) or "cifar10dvs"
        (event frames, attention scale 0.25).
    """
    for key, value in REFERENCE_NEURON.items():
        if config.get(key) != value:
            raise SystemExit(
                f"The preset's {key}={config.get(key)!r} has no reference "
                f"counterpart (the reference hard-codes {value!r})."
            )
    height, width, channels = config["image_shape"]
    kwargs = {
        "img_size_h": height,
        "img_size_w": width,
        "patch_size": config["patch_size"],
        "in_channels": channels,
        "num_classes": num_classes,
        "embed_dims": config["hidden_dim"],
        "num_heads": config["num_heads"],
        "mlp_ratios": config["mlp_ratio"],
        "depths": config["num_layers"],
        "sr_ratios": 1,
    }
    scale, bias, steps = (
        config["attention_scale"],
        config["qkv_bias"],
        config["num_timesteps"],
    )
    if config["encoding"] == "frames":
        folder, want = "cifar10dvs", (0.25, False)
        if (height, width) != (128, 128):
            raise SystemExit(
                "The event-frame reference hard-codes 128x128 frames in its patch "
                f"splitting; the preset has {height}x{width}."
            )
    elif bias:
        folder, want = "cifar10", (0.125, True)
        kwargs["T"] = steps
    else:
        folder, want = "imagenet", (0.125, False)
        if steps != 4:
            raise SystemExit(
                f"The ImageNet reference fixes T=4 in its forward; the preset has "
                f"T={steps}."
            )
    if (scale, bias) != want:
        raise SystemExit(
            f"The preset (attention_scale={scale}, qkv_bias={bias}) matches no "
            f"reference model: {folder}/model.py has scale {want[0]}, "
            f"qkv bias {want[1]}."
        )
    return folder, kwargs


def check_checkout(reference_dir, folder):
    """The reference's model.py for `folder`, or a clear exit."""
    root = Path(reference_dir).expanduser()
    model_py = root / folder / "model.py"
    if not root.is_dir():
        raise SystemExit(f"--reference-dir {root} is not a directory; {CLONE_HINT}.")
    text = model_py.read_text() if model_py.is_file() else ""
    if "class Spikformer" not in text or "MultiStepLIFNode" not in text:
        raise SystemExit(
            f"{root} is not a checkout of ZK-Zhou/spikformer: {model_py} is missing "
            f"or defines no Spikformer with MultiStepLIFNode neurons; {CLONE_HINT}."
        )
    return model_py


def check_dependencies():
    """Imports torch, spikingjelly, timm; exits naming what is missing."""
    from importlib import metadata

    missing = []
    for module, pip_name in (
        ("torch", "torch"),
        ("spikingjelly", f"spikingjelly=={SPIKINGJELLY_VERSION}"),
        ("timm", "timm==0.5.4"),
    ):
        if importlib.util.find_spec(module) is None:
            missing.append(pip_name)
    if missing:
        raise SystemExit(
            f"{sys.executable} lacks {', '.join(missing)}: the reference needs its "
            f"own environment, e.g. `python -m venv refvenv && refvenv/bin/pip "
            f"install torch {' '.join(missing)} numpy` (benchmarks/README.md)."
        )
    versions = {m: metadata.version(m) for m in ("torch", "spikingjelly", "timm")}
    if versions["spikingjelly"] != SPIKINGJELLY_VERSION:
        print(
            f"warning: spikingjelly {versions['spikingjelly']}, the reference was "
            f"written for {SPIKINGJELLY_VERSION}",
            file=sys.stderr,
        )
    return versions


_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_torchvision_library = []  # keeps the shim's op definitions alive


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
        import timm  # noqa: F401

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
    import timm  # noqa: F401, F811

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


def build_reference(model_py, folder, kwargs):
    """The reference model with every neuron on SpikingJelly's torch backend."""
    from spikingjelly.clock_driven.neuron import MultiStepLIFNode

    import_timm()
    name = f"reference_{folder}"
    spec = importlib.util.spec_from_file_location(name, model_py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # timm's register_model looks the module up
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise SystemExit(
            f"Importing {model_py} failed ({error}); install what it names "
            "(cifar10dvs needs einops) or a timm that still has timm.models.layers "
            "(timm==0.5.4)."
        ) from error
    with _cupy_backend_accepted():
        model = module.Spikformer(**kwargs)
    neurons = [m for m in model.modules() if isinstance(m, MultiStepLIFNode)]
    if not neurons:
        raise SystemExit(f"{model_py} built a model without MultiStepLIFNode neurons.")
    for node in neurons:
        node.backend = "torch"
    return model, len(neurons)


def run(args):
    config, num_classes = read_preset(args.preset)
    folder, kwargs = reference_variant(config, num_classes)
    model_py = check_checkout(args.reference_dir, folder)
    versions = check_dependencies()
    import numpy as np
    import torch
    from spikingjelly.clock_driven import functional

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torchvision_shim = import_timm()
    model, num_neurons = build_reference(model_py, folder, kwargs)
    rng = np.random.default_rng(0)
    height, width, channels = config["image_shape"]
    shape = (args.batch_size, channels, height, width)
    if folder == "cifar10dvs":
        shape = (args.batch_size, config["num_timesteps"]) + shape[1:]
    x = torch.from_numpy(rng.normal(size=shape).astype("float32"))
    y = torch.from_numpy(rng.integers(0, num_classes, args.batch_size))
    if args.mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            functional.reset_net(model)
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x).numpy()
            functional.reset_net(model)

    started = time.perf_counter()
    step()
    first_seconds = time.perf_counter() - started
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    machine = machine_info()
    return {
        "preset": args.preset,
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
        "neuron_backend": "torch",
        "num_neurons": num_neurons,
        "reference_model": f"{folder}/model.py",
        "reference_sha256": hashlib.sha256(model_py.read_bytes()).hexdigest()[:12],
        "xla_flags": "",
        "commit": git_commit(model_py.parent.parent),
    }


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
