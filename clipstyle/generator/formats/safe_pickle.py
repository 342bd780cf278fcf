"""A restricted unpickler for network pickles: no code from a file ever runs.

NVIDIA's stylegan2-ada-pytorch and stylegan3 snapshots, and the TensorFlow-era StyleGAN2 pickles, are
plain pickles whose objects are rebuilt by calling globals named in the file. A normal ``pickle.load``
would import and call whatever the file names (``os.system`` included) and would ``exec`` the module
source embedded in NVIDIA's persistent objects. Here every global the file asks for is looked up in an
explicit allow-list and replaced by an inert stand-in written in this module; anything else raises
:class:`UnsafePickleError` before it is called. The embedded source text is kept as a string, never run.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global that is not on the allow-list (its payload was not run)."""


class CorruptPickleError(pickle.UnpicklingError):
    """The file is truncated or is not a valid pickle."""


@dataclass
class PersistentObject:
    """Stand-in for an object NVIDIA's ``torch_utils.persistence`` pickled.

    Attributes:
        class_name: bare class name (``'SynthesisLayer'``…), without a module path.
        state: the module's attribute dict (``_parameters``, ``_buffers``, ``_modules``, plain attributes).
    """

    class_name: str
    state: dict[str, Any]

    # ---- the parts of an nn.Module's __dict__ a converter needs ----
    @property
    def parameters(self) -> dict[str, torch.Tensor | None]:
        return dict(self.state.get("_parameters") or {})

    @property
    def buffers(self) -> dict[str, torch.Tensor | None]:
        return dict(self.state.get("_buffers") or {})

    @property
    def modules(self) -> dict[str, "PersistentObject | None"]:
        return dict(self.state.get("_modules") or {})

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def attr(self, name: str, default: Any = None) -> Any:
        """A plain attribute, a parameter, a buffer or a child module, by name."""
        for key in ("_parameters", "_buffers", "_modules"):
            table = self.state.get(key) or {}
            if name in table:
                return table[name]
        return self.state.get(name, default)

    def child(self, name: str) -> "PersistentObject":
        mod = self.modules.get(name)
        if not isinstance(mod, PersistentObject):
            raise KeyError(f"{self.class_name} has no sub-module {name!r}")
        return mod

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and buffer below this object, named like ``nn.Module.state_dict()``."""
        out: dict[str, torch.Tensor] = {}
        for table in (self.parameters, self.buffers):
            for name, value in table.items():
                if torch.is_tensor(value):
                    out[prefix + name] = value
        for name, mod in self.modules.items():
            if isinstance(mod, PersistentObject):
                out.update(mod.state_dict(prefix + name + "."))
        return out


class EasyDictStandIn(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TFNetworkStandIn:
    """Stand-in for ``dnnlib.tflib.network.Network``: BUILD fills ``__dict__``; nothing is executed."""

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise CorruptPickleError("a TensorFlow Network's state is not a dict")
        self.__dict__.update(state)


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise CorruptPickleError("unexpected persistent-object record (only classes are supported)")
    state = meta["state"]
    if not isinstance(state, dict):
        raise CorruptPickleError("persistent object state is not a dict")
    return PersistentObject(class_name=str(meta.get("class_name")), state=state)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, backward_hooks: Any = None) -> torch.Tensor:
    if not torch.is_tensor(data):
        raise CorruptPickleError("parameter data is not a tensor")
    return data


def _rebuild_parameter_with_state(data: torch.Tensor, requires_grad: bool, backward_hooks: Any, state: Any) -> torch.Tensor:
    return _rebuild_parameter(data)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not torch.is_tensor(storage) or storage.ndim != 1:
        raise CorruptPickleError("tensor storage is not a flat buffer")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    need = int(storage_offset) + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else 0
    if need > storage.numel():
        raise CorruptPickleError("tensor extends past the end of its storage")
    return torch.as_strided(storage, size, stride, int(storage_offset)).clone()


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


class _LegacyStorageUnpickler(pickle.Unpickler):
    """Reads one of the five small pickles of a legacy ``torch.save`` stream."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafePickleError(f"refusing global {module}.{name} inside a tensor storage")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise CorruptPickleError("unexpected persistent id in a tensor storage")
        return pid


def _load_storage_from_bytes(data: bytes) -> torch.Tensor:
    """Parse a legacy (non-zip) ``torch.save`` stream holding exactly one storage → flat tensor."""
    if not isinstance(data, (bytes, bytearray)):
        raise CorruptPickleError("storage payload is not bytes")
    f = io.BytesIO(data)
    try:
        magic = _LegacyStorageUnpickler(f).load()
        if magic != 0x1950A86A20F9469CFC6C:
            raise CorruptPickleError("storage payload has the wrong magic number")
        _LegacyStorageUnpickler(f).load()  # protocol version
        _LegacyStorageUnpickler(f).load()  # sys info
        pid = _LegacyStorageUnpickler(f).load()
        keys = _LegacyStorageUnpickler(f).load()
    except (EOFError, pickle.UnpicklingError, struct.error, ValueError) as exc:
        if isinstance(exc, pickle.UnpicklingError) and not type(exc) is pickle.UnpicklingError:
            raise
        raise CorruptPickleError(f"truncated or invalid tensor storage ({exc})") from None
    if not isinstance(keys, list) or len(keys) != 1:
        raise CorruptPickleError("expected exactly one storage in a storage payload")
    dtype = pid[1].dtype
    header = f.read(8)
    if len(header) != 8:
        raise CorruptPickleError("tensor storage is truncated")
    (numel,) = struct.unpack("<q", header)
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = f.read(numel * itemsize)
    if len(raw) != numel * itemsize or numel < 0:
        raise CorruptPickleError("tensor storage is truncated")
    return torch.frombuffer(bytearray(raw), dtype=dtype) if numel else torch.empty(0, dtype=dtype)


def _safe_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(obj, align=align, copy=copy) if isinstance(obj, str) else None
    if dt is None or dt.hasobject:
        raise UnsafePickleError(f"refusing NumPy dtype {obj!r}")
    return dt


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("refusing a NumPy scalar that is not plain numeric data")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("refusing a NumPy array subclass")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _namespace_standin() -> type:
    import argparse

    return argparse.Namespace


# module, name → stand-in. Both NumPy spellings (numpy.core before 2.0, numpy._core after).
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): lambda: _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): lambda: EasyDictStandIn,
    ("dnnlib.tflib.network", "Network"): lambda: TFNetworkStandIn,
    ("torch._utils", "_rebuild_parameter"): lambda: _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: _rebuild_parameter_with_state,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: _rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): lambda: _load_storage_from_bytes,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("builtins", "set"): lambda: set,
    ("__builtin__", "set"): lambda: set,
    ("numpy", "dtype"): lambda: _safe_dtype,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns stand-ins from :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        factory = ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise UnsafePickleError(f"refusing to load global {module}.{name}: it is not on the allow-list")
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent id in a plain pickle")


def safe_load_pickle(data: bytes | io.BufferedIOBase) -> Any:
    """Unpickle ``data`` (bytes or a binary file) with :class:`RestrictedUnpickler`.

    Raises:
        UnsafePickleError: a global outside the allow-list was named (nothing from the file ran).
        CorruptPickleError: the stream is truncated or malformed.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        return RestrictedUnpickler(f).load()
    except (UnsafePickleError, CorruptPickleError):
        raise
    except (EOFError, pickle.UnpicklingError, struct.error, ValueError, TypeError, IndexError,
            KeyError, AttributeError, MemoryError, RuntimeError) as exc:
        raise CorruptPickleError(f"the pickle is truncated or corrupt ({type(exc).__name__}: {exc})") from None

