"""The numeric data a network pickle may hold, as validated placeholders (see :mod:`.safe_pickle`).

* ``numpy.dtype`` → :class:`_DTypePending`: only whitelisted numeric type strings, only the standard
  ``(3, byteorder, None, None, None, -1, -1, 0)`` state;
* ``numpy.core.multiarray._reconstruct`` + BUILD → :class:`_ArrayPending`: only a plain ndarray from the
  standard ``(1, shape, dtype, fortran, bytes)`` state with exactly ``prod(shape) × itemsize`` bytes, built
  as ``frombuffer(...).reshape(...).copy()``; ``numpy.core.multiarray.scalar`` likewise;
* torch's ``_rebuild_tensor_v2`` / ``_load_from_bytes`` → a flat storage copy and a tensor inside it
  (a tensor larger than its storage, e.g. zero strides, is refused before anything is allocated).

Every allocation is charged to a per-load :class:`_Charge` budget.
"""

from __future__ import annotations

import collections
import math
import pickle
from typing import Any

import numpy as np
import torch

from clipstyle.generator.formats.budget import BudgetError, limits
from clipstyle.generator.formats.common import safe_text
from clipstyle.generator.formats.pickle_vm import Global, Pending, run_pickle
from clipstyle.errors import BadFileError


class UnsafePickleError(BadFileError, pickle.UnpicklingError):
    """The pickle names a global or a construction that is not allowed (nothing from it ran)."""


class CorruptPickleError(BadFileError, pickle.UnpicklingError):
    """The file is truncated, is not a valid pickle, or its objects have invalid state."""


# ---------------------------------------------------------------- numeric data

_NUMERIC = ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1")
_NUMPY_CODES = {np.dtype(c).str.lstrip("<>|="): np.dtype(c) for c in _NUMERIC}
_NUMPY_CODES.update({np.dtype(c).name: np.dtype(c) for c in _NUMERIC})


class _Charge:
    """Counts the bytes one load allocates for tensors/arrays against the budget."""

    def __init__(self) -> None:
        self.total = 0
        self.limit = limits().max_tensor_bytes

    def __call__(self, nbytes: int) -> None:
        self.total += int(nbytes)
        if self.total > self.limit:
            raise BudgetError(f"the file builds more than {self.limit / 1e9:.1f} GB of arrays; refused "
                              f"(set CLIPSTYLE_MAX_CHECKPOINT_BYTES to raise the limit)")


def _ints(value: Any, what: str, ndim: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise CorruptPickleError(f"{what} is not a tuple of integers")
    if len(value) > limits().max_ndim or (ndim is not None and len(value) != ndim) or any(v < 0 for v in value):
        raise CorruptPickleError(f"{what} {safe_text(list(value)[:10])} is invalid")
    return tuple(value)


class _DTypePending(Pending):
    __slots__ = ("base", "value")

    def __init__(self, base: np.dtype) -> None:
        self.base, self.value = base, None

    def _vm_build(self, state: Any) -> None:
        if self.value is not None:
            raise UnsafePickleError("a NumPy dtype's state is set twice")
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
                and state[2:] == (None, None, None, -1, -1, 0)):
            raise UnsafePickleError(f"refusing a NumPy dtype with a non-standard state {safe_text(state)}")
        self.value = self.base.newbyteorder(state[1]) if state[1] in "<>" else self.base

    def _vm_value(self) -> np.dtype:
        if self.value is None:
            raise CorruptPickleError("a NumPy dtype without its state")
        return self.value


def _numpy_dtype(code: Any, align: Any = False, copy: Any = True) -> _DTypePending:
    if type(code) is not str or code not in _NUMPY_CODES or align not in (False, 0) or type(copy) is not bool:
        raise UnsafePickleError(f"refusing NumPy dtype {safe_text(code)} (only numeric dtypes are read)")
    return _DTypePending(_NUMPY_CODES[code])


def _native(a: np.ndarray) -> np.ndarray:
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


class _ArrayPending(Pending):
    __slots__ = ("charge", "value")

    def __init__(self, charge: _Charge) -> None:
        self.charge, self.value = charge, None

    def _vm_build(self, state: Any) -> None:
        if self.value is not None:
            raise UnsafePickleError("a NumPy array's state is set twice")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise UnsafePickleError("refusing a NumPy array with a non-standard state")
        _, shape, dtype, fortran, data = state
        shape = _ints(shape, "a NumPy array shape")
        if not isinstance(dtype, np.dtype) or dtype.base.str.lstrip("<>|=") not in _NUMPY_CODES or type(fortran) is not bool:
            raise UnsafePickleError("refusing a NumPy array that is not plain numeric data")
        if type(data) is not bytes:
            raise UnsafePickleError("refusing a NumPy array whose data is not raw bytes")
        need = math.prod(shape) * dtype.itemsize
        if len(data) != need:
            raise CorruptPickleError(f"a NumPy array of shape {list(shape)} needs {need} bytes, has {len(data)}")
        self.charge(need)
        arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()
        self.value = _native(arr)

    def _vm_value(self) -> np.ndarray:
        if self.value is None:
            raise CorruptPickleError("a NumPy array without its state")
        return self.value


_NDARRAY = Global("numpy.ndarray")


def _numpy_reconstruct(charge: _Charge):
    def reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArrayPending:
        if subtype is not _NDARRAY or shape != (0,) or typecode != b"b":
            raise UnsafePickleError("refusing a NumPy array that is not a plain ndarray")
        return _ArrayPending(charge)
    return reconstruct


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or type(data) is not bytes or len(data) != dtype.itemsize:
        raise UnsafePickleError("refusing a NumPy scalar that is not plain numeric data")
    return _native(np.frombuffer(data, dtype=dtype, count=1))[0]


# ---------------------------------------------------------------- torch tensors

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_STORAGE_GLOBALS = {("torch", n): Global(f"torch.{n}") for n in _STORAGE_DTYPES}
_STORAGE_OF = {g: _STORAGE_DTYPES[n] for (_, n), g in _STORAGE_GLOBALS.items()}
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _empty_hooks(value: Any) -> bool:
    return value is None or (type(value) in (dict, collections.OrderedDict) and not value)


def _rebuild_tensor(charge: _Charge):
    def rebuild(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        if not torch.is_tensor(storage) or storage.ndim != 1:
            raise CorruptPickleError("tensor storage is not a flat buffer")
        size = _ints(size, "a tensor size")
        stride = _ints(stride, "a tensor stride", len(size))
        if type(storage_offset) is not int or storage_offset < 0 or type(requires_grad) is not bool:
            raise CorruptPickleError("invalid tensor offset or flags")
        if not _empty_hooks(backward_hooks) or not _empty_hooks(metadata):
            raise UnsafePickleError("refusing a tensor with hooks or metadata")
        numel = math.prod(size)
        need = storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if numel else 0
        if need > storage.numel() or numel > storage.numel():
            raise CorruptPickleError(f"a tensor of shape {list(size)} extends past (or repeats) its storage "
                                     f"of {storage.numel()} elements")
        charge(numel * storage.element_size())
        contiguous = tuple(int(v) for v in torch.empty(0).new_empty(size, device="meta").stride()) == stride
        if storage_offset == 0 and numel == storage.numel() and contiguous:
            return storage.view(size)  # the storage is our own fresh copy: no second copy needed
        return torch.as_strided(storage, size, stride, storage_offset).clone()
    return rebuild


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None):
    if not torch.is_tensor(data) or not _empty_hooks(backward_hooks) or not _empty_hooks(state):
        raise CorruptPickleError("parameter data is not a plain tensor")
    return data


def _storage_pid(pid: Any) -> Any:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in _STORAGE_OF
            and type(pid[2]) is str and type(pid[4]) is int and pid[4] >= 0):
        raise CorruptPickleError("unexpected persistent id in a tensor storage")
    return pid


_LEGACY_TABLE = {**_STORAGE_GLOBALS}


def _load_storage_from_bytes(charge: _Charge):
    def load(data: Any) -> torch.Tensor:
        """Parse a legacy (non-zip) ``torch.save`` stream holding exactly one storage → flat tensor."""
        if type(data) is not bytes:
            raise CorruptPickleError("storage payload is not bytes")
        pos, parts = 0, []
        for _ in range(5):
            value, pos = run_pickle(data, _LEGACY_TABLE, pos=pos, persistent_load=_storage_pid)
            parts.append(value)
        magic, _, _, pid, keys = parts
        if magic != LEGACY_TORCH_MAGIC:
            raise CorruptPickleError("storage payload has the wrong magic number")
        if not isinstance(pid, tuple) or not isinstance(keys, list) or len(keys) != 1:
            raise CorruptPickleError("expected exactly one storage in a storage payload")
        dtype = _STORAGE_OF[pid[1]]
        if len(data) < pos + 8:
            raise CorruptPickleError("tensor storage is truncated")
        numel = int.from_bytes(data[pos:pos + 8], "little", signed=True)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if numel < 0 or len(data) - pos - 8 < numel * itemsize:
            raise CorruptPickleError("tensor storage is truncated")
        charge(numel * itemsize)
        raw = bytearray(memoryview(data)[pos + 8:pos + 8 + numel * itemsize])
        return torch.frombuffer(raw, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
    return load
