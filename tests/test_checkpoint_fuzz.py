"""Fuzzing the checkpoint reader: every mutated or crafted file ends in a clear
refusal or a correct read, within a memory bound, and never runs code.

Peak memory is read from /proc/self/status (VmHWM, reset through
/proc/self/clear_refs) around each read; one subprocess test checks the
headline case with `resource.getrusage` as well.
"""

import io
import os
import pickle
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_spikformer.convert.checkpoint_files import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    read_checkpoint,
)

pytestmark = pytest.mark.backend_independent

DATA = Path(__file__).parent / "data"
SEED = 17
# Peak memory allowed for reading a file: twice its size plus this.
FIXED_BOUND = 64 * 2**20


# ---------------------------------------------------------------- measuring
def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _can_measure() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set, to VmRSS
        return _status("VmHWM") > 0
    except OSError:
        return False


MEASURE = _can_measure()


def _read(path: Path) -> tuple[str, int | None]:
    """Reads `path`; returns `(outcome, peak bytes above the start or None)`.

    The outcome is "ok", or the refusal's message; any other exception
    propagates and fails the test.
    """
    if MEASURE:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS")
    try:
        contents = read_checkpoint(path, progress=False)
        for array in contents.state_dict.values():
            assert isinstance(array, np.ndarray) and array.flags.c_contiguous
        outcome = "ok"
    except (CheckpointFormatError, UnsafeCheckpointError) as error:
        outcome = str(error)
        assert str(path) in outcome or "corrupt checkpoint" in outcome, outcome
    peak = _status("VmHWM") - before if MEASURE else None
    return outcome, peak


def _check_bounded(path: Path, outcome_peak: tuple[str, int | None]) -> str:
    outcome, peak = outcome_peak
    if peak is not None:
        limit = 2 * path.stat().st_size + FIXED_BOUND
        assert peak < limit, f"{path.name}: peak {peak} >= {limit} ({outcome[:200]})"
    return outcome


# ---------------------------------------------------------------- crafting
def _p(value) -> bytes:
    """Pickle opcodes of a plain value, without PROTO and STOP."""
    f = io.BytesIO()
    pickler = pickle.Pickler(f, protocol=2)
    pickler.fast = True  # no memo, so pieces can be concatenated
    pickler.dump(value)
    return f.getvalue()[2:-1]


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def _tensor(key, shape, stride, offset=0, numel=None, view=None, kind="Float"):
    numel = numel if numel is not None else 1
    pid = [_p("storage"), _global("torch", f"{kind}Storage"), _p(key), _p("cpu")]
    pid.append(_p(numel))
    if view is not None:
        pid.append(_p((key, *view)))
    return b"".join(
        [
            _global("torch._utils", "_rebuild_tensor_v2"),
            b"(",
            b"(" + b"".join(pid) + b"tQ",
            _p(offset) + _p(tuple(shape)) + _p(tuple(stride)) + b"\x89",
            _global("collections", "OrderedDict") + b")R",
            b"tR",
        ]
    )


def _dict(items: dict) -> bytes:
    """A dict whose values are opcode strings (bytes) or plain values."""
    body = b"".join(
        _p(k) + (v if isinstance(v, bytes) else _p(v)) for k, v in items.items()
    )
    return b"}(" + body + b"u"


def _pickle(weights: dict, **extras) -> bytes:
    return b"\x80\x02" + _dict({"state_dict": _dict(weights), **extras}) + b"."


def _write_zip(path: Path, pkl: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def _write_legacy(path: Path, main: bytes, storages: dict[str, bytes]) -> Path:
    header = [0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}]
    parts = [pickle.dumps(x, protocol=2) for x in header]
    parts += [main, pickle.dumps(sorted(storages), protocol=2)]
    for key in sorted(storages):
        parts += [(len(storages[key]) // 4).to_bytes(8, "little"), storages[key]]
    path.write_bytes(b"".join(parts))
    return path


FLOATS = np.arange(16, dtype=np.float32).tobytes()


class _Exploit:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _w(shape=(4,), stride=(1,), key="0", **kwargs) -> dict:
    return {"w": _tensor(key, shape, stride, **kwargs)}


_DAG = b"]q\x000" + b"h\x00h\x00\x86q\x000" * 60 + b"h\x00"  # x = (x, x): 2**60 paths
_INNER = pickle.dumps({"state_dict": _Exploit(os.system, "touch MARKER")}, 2)
_HUGE_BYTES = b"\x8e" + (2**40).to_bytes(8, "little") + b"abc"  # BINBYTES8
_BIG_MEMO = b"]r" + (2**24).to_bytes(4, "little")  # LONG_BINPUT: a 256 MiB memo
_DEEP = b"]" * 100_000 + b"a" * 99_999
_LOADS = _global("pickle", "loads") + _p((_INNER,)) + b"R"
_TORCH_LOAD = _global("torch", "load") + _p(("x.pth",)) + b"R"
_MANY = {f"w{i}": _tensor("0", (1 << 14,), (1,)) for i in range(3000)}
# name, tensors, storage "0", expected ("ok" or a regex of the refusal), extras
ZIP_CASES = [
    ("stride0", _w((20000, 20000), (0, 0)), FLOATS[:4], "stride 0", {}),
    ("stride0_one_dim", _w((4, 8000), (1, 0)), FLOATS, "stride 0", {}),
    ("overlap", _w((1000, 1000), (1, 1)), FLOATS, "overlapping", {}),
    ("overlap_fits", _w((4, 4), (2, 1)), FLOATS, "overlapping", {}),
    ("beyond", _w((10,)), FLOATS[:20], "holds 5 elements.*needs 10", {}),
    ("offset", _w((2,), offset=10**12), FLOATS, "needs 1000000000002", {}),
    ("huge_shape", _w((10**6, 10**6), (10**6, 1)), FLOATS, "needs", {}),
    ("missing_key", _w(key="7"), FLOATS, "storage '7'.*archive record", {}),
    ("odd_storage", _w((1,)), FLOATS[:7], "whole number", {}),
    ("bad_storage_type", _w(kind="Evil"), FLOATS, "torch.EvilStorage", {}),
    ("negative_stride", _w(stride=(-1,)), FLOATS, "ints >= 0", {}),
    ("rank_mismatch", _w((4, 4)), FLOATS, "differ in rank", {}),
    ("many_views", _MANY, bytes(1 << 16), "3000 tensors would take", {}),
    ("good", _w((4, 4), (1, 4)), FLOATS, "ok", {}),
    # Pickle-level: huge declared lengths, bombs, nesting, cycles, nested pickles.
    ("huge_bytes", _w(), FLOATS, "expected 1099511627776", {"x": _HUGE_BYTES}),
    ("list_bomb", _w(), FLOATS, "would take", {"x": b"(" + b"]" * 600_000 + b"l"}),
    ("memo_index", _w(), FLOATS, "would take", {"x": _BIG_MEMO}),
    ("deep", _w(), FLOATS, "nested more than", {"x": _DEEP}),
    ("cycle", _w(), FLOATS, "ok", {"x": b"]q\x00h\x00a"}),
    ("dag", _w(), FLOATS, "ok", {"x": _DAG}),
    ("pickled_bytes", _w(), FLOATS, "ok", {"x": _p(_INNER)}),
    ("pickle_loads", _w(), FLOATS, "pickle.loads", {"x": _LOADS}),
    ("torch_load", _w(), FLOATS, "torch.load", {"x": _TORCH_LOAD}),
]


def _crafted(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected: "ok" or a regex the refusal must match)."""
    cases = {}
    for name, weights, storage, expected, extras in ZIP_CASES:
        pkl = _pickle(weights, **extras)
        cases[name] = (_write_zip(tmp / f"{name}.pth", pkl, {"0": storage}), expected)
    # Archive-level.
    two = tmp / "two_records.pth"
    with zipfile.ZipFile(two, "w") as archive:
        for prefix in ("a", "b"):
            archive.writestr(f"{prefix}/data.pkl", _pickle({}))
    cases["two_records"] = (two, "2 pickle records")
    # Legacy format: a storage view, declared sizes past the end of the file.
    view = _tensor("0", (4,), (1,), numel=16, view=(12, 8))
    cases["legacy_view"] = (
        _write_legacy(tmp / "legacy_view.pth", _pickle({"w": view}), {"0": FLOATS}),
        "outside",
    )
    path = _write_legacy(tmp / "legacy_numel.pth", _pickle(_w()), {"0": FLOATS})
    data = bytearray(path.read_bytes())
    at = len(data) - len(FLOATS) - 8
    data[at : at + 8] = (2**50).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    cases["legacy_numel"] = (path, "past the end")
    # safetensors and npz headers that declare more than the file holds.
    st = tmp / "huge.safetensors"
    st.write_bytes((2**62).to_bytes(8, "little") + b'{"a": 1}')
    cases["safetensors_header"] = (st, "header declares")
    npz = tmp / "huge.npz"
    with zipfile.ZipFile(npz, "w") as archive:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "<f4", "fortran_order": False, "shape": (50000, 50000)}
        )
        archive.writestr("a.npy", buf.getvalue() + FLOATS)
    cases["npz_shape"] = (npz, "needs 10000000000 bytes")
    obj = tmp / "object.npz"
    np.savez(obj, a=np.array([1, "x"], dtype=object))
    cases["npz_object"] = (obj, "Python objects")
    return cases


# ---------------------------------------------------------------- mutations
def _flip(data: bytes, rng: random.Random, count: int) -> bytes:
    data = bytearray(data)
    for _ in range(count):
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return bytes(data)


def _rezip(src: Path, dst: Path, change) -> Path:
    """Copies a zip checkpoint, passing each (name, data) through `change`
    (which returns a new pair, or None to drop the record); CRCs stay valid."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if (changed := change(name, old.read(name))) is not None:
                new.writestr(*changed)
    return dst


def _mutations(tmp: Path, rng: random.Random) -> list[Path]:
    out = []

    def write(name: str, data: bytes) -> None:
        out.append(tmp / name)
        out[-1].write_bytes(data)

    sources = {
        "zip": (DATA / "zip_small.pth", 60),
        "legacy": (DATA / "legacy_small.pth", 60),
        "cifar": (DATA / "cifar10_small.pth.tar", 8),
    }
    for tag, (src, count) in sources.items():
        data = src.read_bytes()
        for i in range(count):
            write(f"{tag}_cut{i}.pth", data[: rng.randrange(1, len(data))])
            write(f"{tag}_flip{i}.pth", _flip(data, rng, rng.choice([1, 2, 8])))
    for src, count in (
        (DATA / "zip_small.pth", 150),
        (DATA / "cifar10_small.pth.tar", 10),
    ):
        for i in range(count):  # flips inside the pickle, behind a valid CRC
            seed = rng.randrange(2**32)

            def flip_pickle(name, data, seed=seed):
                if name.endswith("data.pkl"):
                    return name, _flip(data, random.Random(seed), 1 + seed % 4)
                return name, data

            out.append(_rezip(src, tmp / f"{src.stem}_pkl{i}.pth", flip_pickle))
    zip_src = DATA / "zip_small.pth"
    storage_keys = ["zip_small/data/0", "zip_small/data/1", "zip_small/data/4"]
    for i, key in enumerate(storage_keys):
        out.append(
            _rezip(
                zip_src,
                tmp / f"drop{i}.pth",
                lambda n, d, k=key: None if n == k else (n, d),
            )
        )
        out.append(
            _rezip(
                zip_src,
                tmp / f"rename{i}.pth",
                lambda n, d, k=key: (n + "9" if n == k else n, d),
            )
        )
        out.append(
            _rezip(
                zip_src,
                tmp / f"short{i}.pth",
                lambda n, d, k=key: (n, d[:-4] if n == k else d),
            )
        )
    return out


# ---------------------------------------------------------------- tests
def test_crafted_files_are_refused_clearly_within_the_memory_bound(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # where an exploit would write MARKER
    for name, (path, expected) in _crafted(tmp_path).items():
        outcome = _check_bounded(path, _read(path))
        if expected == "ok":
            assert outcome == "ok", f"{name}: {outcome}"
        else:
            assert outcome != "ok", f"{name}: was read, expected a refusal"
            assert re.search(expected, outcome), f"{name}: {outcome}"
    assert not (tmp_path / "MARKER").exists()


def test_crafted_good_files_read_correctly(tmp_path):
    cases = _crafted(tmp_path)
    good = read_checkpoint(cases["good"][0]).state_dict["w"]
    np.testing.assert_array_equal(good, np.arange(16, dtype=np.float32).reshape(4, 4).T)
    metadata = read_checkpoint(cases["cycle"][0]).metadata
    assert metadata["x"] == ["<cycle>"]
    nested = read_checkpoint(cases["pickled_bytes"][0]).metadata["x"]
    assert isinstance(nested, bytes) and b"system" in nested  # kept inert


def test_mutated_checkpoints_end_in_a_refusal_or_a_read(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    files = _mutations(tmp_path, rng)
    outcomes = [_check_bounded(path, _read(path)) for path in files]
    refused = [o for o in outcomes if o != "ok"]
    assert len(files) >= 400 and len(refused) > len(files) // 2
    corrupt = [o for o in refused if o.startswith("corrupt checkpoint:")]
    assert len(corrupt) > len(refused) // 2  # most breakages are named as such
    assert not any("unpack" in o for o in refused)  # no raw tuple errors
    assert not marker.exists() and not (tmp_path / "MARKER").exists()


@pytest.mark.large
def test_stride0_file_peak_memory_in_a_subprocess(tmp_path):
    path = _write_zip(
        tmp_path / "stride0.pth",
        _pickle({"w": _tensor("0", (8000, 8000), (0, 0))}),
        {"0": FLOATS[:4]},
    )
    script = (
        "import resource, sys\n"
        "from keras_spikformer.convert import checkpoint_files as c\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    c.read_state_dict(sys.argv[1])\n"
        "    print('read')\n"
        "except c.CheckpointFormatError as e:\n"
        "    print('refused', e)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) * 1024)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("refused corrupt checkpoint:") and "stride 0" in lines[0]
    assert int(lines[-1]) < 2 * path.stat().st_size + FIXED_BOUND
