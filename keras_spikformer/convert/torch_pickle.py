"""A restricted unpickler for PyTorch checkpoints that never imports torch.

`torch.save` writes a pickle whose tensors point at raw storages kept beside
it. `load_pickle` reads such a pickle with an allow-list of the globals a
weights file needs and turns every tensor into a lazy `TensorRef`; no other
global is imported or called, so a malicious file cannot run code.
"""

import _compat_pickle
import collections
import dataclasses
import math
import pickle
import pickletools
from collections.abc import Callable
from typing import IO, Any, ClassVar

import ml_dtypes
import numpy as np


class UnsafeCheckpointError(ValueError):
    """A checkpoint refers to a Python global outside the allow-list."""


@dataclasses.dataclass(frozen=True, slots=True)
class StorageType:
    """Stand-in for a `torch.*Storage` class: the element type it holds."""

    dtype: np.dtype


@dataclasses.dataclass(frozen=True, slots=True)
class TorchDtype:
    """Stand-in for a `torch.dtype` object such as `torch.float32`."""

    name: str

    def __str__(self) -> str:
        return f"torch.{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class StorageRef:
    """A raw storage, read later by `key`.

    `view` is `(offset, numel)` for a legacy-format view into storage `key`.
    """

    key: str
    dtype: np.dtype
    view: tuple[int, int] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor described by storage, element offset, shape and strides."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.storage.dtype.itemsize

    def build(self, storage: np.ndarray) -> np.ndarray:
        """Copies the tensor out of its storage's elements.

        Args:
            storage: 1-D array of the whole storage named by `self.storage`.

        Returns:
            A C-contiguous array that owns its data.
        """
        if self.storage.view is not None:
            start, numel = self.storage.view
            storage = storage[start : start + numel]
        if math.prod(self.shape) == 0:
            return np.zeros(self.shape, storage.dtype)
        steps = zip(self.shape, self.stride, strict=True)
        extent = sum((n - 1) * s for n, s in steps) + 1
        if self.offset + extent > storage.size:
            raise ValueError(
                f"storage {self.storage.key!r} holds {storage.size} elements, "
                f"but a tensor of shape {self.shape} at offset {self.offset} "
                f"with strides {self.stride} needs {self.offset + extent}"
            )
        itemsize = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[self.offset :],
            shape=self.shape,
            strides=[s * itemsize for s in self.stride],
            writeable=False,
        )
        return np.array(view, order="C")


class InertObject:
    """Keeps the pickled arguments and state of an allow-listed data class.

    The real class is never imported; `args` and `state` are what the
    pickle passed to its constructor and to `__setstate__`.
    """

    qualname: ClassVar[str]

    def __new__(cls, *args: Any) -> "InertObject":
        self = super().__new__(cls)
        self.args, self.state = args, None
        return self

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.qualname} args={self.args} state={self.state}>"


class _FrozenClass(type):
    """Metaclass that keeps a pickle from setting attributes on the class."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")


def _inert_class(qualname: str) -> type:
    return _FrozenClass(qualname, (InertObject,), {"qualname": qualname})


class _Callable:
    """Read-only wrapper so that a pickle cannot set attributes on it."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]):
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def _check_ints(name: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not all(
        isinstance(v, int) and v >= 0 for v in values
    ):
        raise ValueError(f"tensor {name} must be a tuple of ints >= 0, got {values!r}")
    return values


def _rebuild_tensor(
    storage: StorageRef, offset: int, shape: tuple, stride: tuple, *_: Any
) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise ValueError(
            f"tensor storage must be a persistent storage, got {storage!r}"
        )
    (offset,) = _check_ints("offset", (offset,))
    shape, stride = (
        _check_ints("shape", tuple(shape)),
        _check_ints("stride", tuple(stride)),
    )
    if len(shape) != len(stride):
        raise ValueError(f"tensor shape {shape} and strides {stride} differ in rank")
    return TensorRef(storage, offset, shape, stride)


def _rebuild_parameter(data: TensorRef, *_: Any) -> TensorRef:
    return data


_DtypeSpec = _inert_class("numpy.dtype")


def _numpy_scalar(spec: InertObject, data: bytes) -> Any:
    if not isinstance(spec, _DtypeSpec) or not isinstance(data, bytes):
        raise ValueError("numpy scalar must be built from a dtype and bytes")
    dtype = np.dtype(str(spec.args[0]))
    if dtype.hasobject:
        raise ValueError(f"numpy scalar of dtype {dtype} holds Python objects")
    byteorder = spec.state[1] if isinstance(spec.state, tuple) else "="
    return np.frombuffer(data, dtype.newbyteorder(byteorder), count=1)[0].item()


def _encode(text: str, encoding: str) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("only latin-1 text can be encoded to bytes")
    return text.encode(encoding)


def _bytes(*args: Any) -> bytes:
    if args and not isinstance(args[0], (bytes, bytearray, str)):
        raise ValueError("bytes must be built from bytes or text")
    return bytes(*args)


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "ComplexDoubleStorage": np.complex128,
    "ComplexFloatStorage": np.complex64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}
_TORCH_DTYPES = (
    "float64 double float32 float float16 half bfloat16 complex64 complex128 "
    "int64 long int32 int int16 short int8 uint8 bool"
).split()

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): _Callable(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Callable(_rebuild_parameter),
    **{("torch", n): StorageType(np.dtype(d)) for n, d in _STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): StorageType(np.dtype(np.uint8)),
    **{("torch", n): TorchDtype(n) for n in _TORCH_DTYPES},
    ("torch", "Size"): tuple,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytes"): _Callable(_bytes),
    ("builtins", "bytearray"): _Callable(lambda *args: bytearray(_bytes(*args))),
    ("_codecs", "encode"): _Callable(_encode),
    ("argparse", "Namespace"): _inert_class("argparse.Namespace"),
    ("numpy", "dtype"): _DtypeSpec,
    ("numpy.core.multiarray", "scalar"): _Callable(_numpy_scalar),
    ("numpy._core.multiarray", "scalar"): _Callable(_numpy_scalar),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `ALLOWED_GLOBALS` and lazy storages.

    Args:
        file: binary file positioned at the pickle.
        source: file name for error messages.

    Attributes:
        storages: every `StorageRef` met, by key (legacy files need their
            element types to read the storages that follow the pickle).
    """

    def __init__(self, file: IO[bytes], source: str):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles spell some globals the Python 2 way.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"Refused to load {self.source}: it refers to the Python global "
                f"`{module}.{name}`, which a weights file does not need and which "
                "could run code. The file was not loaded and no code from it ran. "
                "If you trust the file, load it with torch and save just its "
                "state_dict (torch.save(model.state_dict(), path))."
            ) from None

    def persistent_load(self, pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, _numel, *view = pid
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"malformed storage reference {pid!r}")
        storage = StorageRef(str(key), storage_type.dtype)
        self.storages.setdefault(storage.key, storage)
        if view and view[0] is not None:
            _view_key, start, view_numel = view[0]
            storage = dataclasses.replace(storage, view=(start, view_numel))
        return storage


# Peak bytes one pickle opcode can cost once unpickled (an empty list or dict
# is one byte of pickle and ~80 bytes of Python objects), plus its own bytes.
BYTES_PER_OPCODE = 96
# The unpickler's memo is an array that grows to twice the highest index put.
BYTES_PER_MEMO_INDEX = 16
_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def unpickled_size(file: IO[bytes]) -> int:
    """Bounds the memory that unpickling the pickle at `file`'s position takes.

    Walks the opcodes without building any object, then seeks back. Raises
    `ValueError` for a pickle that is truncated or has an unknown opcode.

    Args:
        file: seekable binary file positioned at the pickle.

    Returns:
        An upper estimate in bytes: `BYTES_PER_OPCODE` per opcode, the
        pickle's length, and the memo array up to the highest index used.

    Example:
    >>> with open("model.pth", "rb") as f:
    ...     nbytes = unpickled_size(f)
    """
    start = file.tell()
    count = memo = 0
    for opcode, arg, _ in pickletools.genops(file):
        count += 1
        if opcode.name in _MEMO_PUTS:
            memo = max(memo, int(arg) + 1)
    size = file.tell() - start
    file.seek(start)
    return count * BYTES_PER_OPCODE + size + memo * BYTES_PER_MEMO_INDEX


def load_pickle(file: IO[bytes], source: str) -> tuple[Any, dict[str, StorageRef]]:
    """Unpickles one object with the allow-list.

    Args:
        file: binary file positioned at the pickle.
        source: file name for error messages.

    Returns:
        The object, with `TensorRef`s for tensors, and the storages it uses.

    Example:
    >>> with open("ckpt/data.pkl", "rb") as f:
    ...     obj, storages = load_pickle(f, "ckpt.pth")
    """
    unpickler = RestrictedUnpickler(file, source)
    return unpickler.load(), unpickler.storages
