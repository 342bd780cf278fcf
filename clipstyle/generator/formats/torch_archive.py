"""Reading ``torch.save`` archives (zip or legacy) with budgets checked before ``torch.load`` allocates.

``torch.load(weights_only=True)`` already refuses globals outside torch's allow-list, but it hashes any
dict key, nests containers without limit, inflates zip entries and clones tensors whatever their strides.
:func:`load_torch_archive` therefore first *dry-runs* the archive's pickle through our own interpreter
(:mod:`.pickle_vm`) without building anything heavy: it checks container depth, object count and dict keys
(strings and numbers only), that every tensor fits inside its storage (no zero-stride amplification) and
that the storages exist with the declared sizes, and it bounds the zip's inflated size and ratio and the
total tensor bytes (:mod:`.budget`). Only then does ``torch.load(weights_only=True)`` read the file.
"""

from __future__ import annotations

import argparse
import collections
import math
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from clipstyle.generator.formats.budget import BudgetError, check_shapes, limits
from clipstyle.generator.formats.common import CheckpointError, safe_text
from clipstyle.generator.formats.pickle_vm import (
    Global,
    Pending,
    PickleVMError,
    PickleVMUnsafe,
    register_dict_type,
    run_pickle,
)

__all__ = ["load_torch_archive", "scan_torch_archive"]

_ITEMSIZE = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
             "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16}
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


class _Opaque(Pending):
    """Whatever torch would build for a global: in the dry run, an inert token accepting any state."""

    __slots__ = ()

    def _vm_build(self, state: Any) -> None:
        return None

    def _vm_value(self) -> _Opaque:
        return self


class _Storage:
    __slots__ = ("itemsize", "key", "numel")

    def __init__(self, key: str, numel: int, itemsize: int) -> None:
        self.key, self.numel, self.itemsize = key, numel, itemsize


class _DryOrderedDict(collections.OrderedDict, Pending):
    """An OrderedDict of the dry run; accepts the BUILD of state dicts' ``_metadata`` (and ignores it)."""

    def _vm_build(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(type(k) is str and not k.startswith("__") for k in state):
            raise PickleVMUnsafe("an OrderedDict with a non-standard state")

    def _vm_value(self) -> _DryOrderedDict:
        return self


register_dict_type(_DryOrderedDict)


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    if args:
        raise PickleVMUnsafe("an OrderedDict built from arguments")
    return _DryOrderedDict()


class _DryTable(dict):
    """Every global maps to an opaque token (torch's own allow-list decides later), except tensors."""

    def __init__(self, on_tensor: Callable[..., Any]) -> None:
        super().__init__()
        self.on_tensor = on_tensor

    def get(self, key: Any, default: Any = None) -> Global:  # type: ignore[override]
        module, name = key
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return Global("_rebuild_tensor_v2", reduce=self.on_tensor)
        if (module, name) == ("collections", "OrderedDict"):
            return Global("collections.OrderedDict", reduce=_ordered_dict)
        m = re.fullmatch(r"(\w+)Storage", name)
        if module == "torch" and m and m.group(1) in _ITEMSIZE:
            return Global(f"torch.{name}")  # a storage type, used in persistent ids
        return Global(f"{module}.{name}", reduce=lambda *a: _Opaque(), newobj=lambda *a: _Opaque())


def _dry_run(data: bytes, pos: int, what: str) -> tuple[list[_Storage], list[tuple[tuple[int, ...], int]], int]:
    storages: dict[str, _Storage] = {}
    shapes: list[tuple[tuple[int, ...], int]] = []

    def persistent_load(pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{what}: unexpected persistent id in the archive")
        stype, key, numel = pid[1], pid[2], pid[4]
        m = re.fullmatch(r"torch\.(\w+)Storage", getattr(stype, "name", ""))
        itemsize = _ITEMSIZE.get(m.group(1), 1) if m else 1
        if type(key) is not str or type(numel) is not int or numel < 0:
            raise CheckpointError(f"{what}: malformed storage record in the archive")
        st = storages.get(key)
        if st is None:
            st = storages[key] = _Storage(key, numel, itemsize)
        return st

    def on_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _Opaque:
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"{what}: a tensor without a storage")
        ok = (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= limits().max_ndim
              and all(type(v) is int and v >= 0 for v in size + stride) and type(offset) is int and offset >= 0)
        if not ok:
            raise CheckpointError(f"{what}: a tensor with an invalid shape or stride")
        numel = math.prod(size)
        need = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if numel else 0
        if need > storage.numel or numel > storage.numel:
            raise CheckpointError(f"{what}: a tensor of shape {list(size)[:8]} extends past (or repeats) its "
                                  f"storage of {storage.numel} elements; refused")
        shapes.append((size, storage.itemsize))
        return _Opaque()

    _, end = run_pickle(data, _DryTable(on_tensor), pos=pos, persistent_load=persistent_load)
    return list(storages.values()), shapes, end


def scan_torch_archive(path: str | Path) -> None:
    """Check a ``torch.save`` file's structure and sizes without building it (see the module docstring).

    Raises:
        BudgetError: over a size/count/ratio limit.
        CheckpointError: malformed structure (a non-plain dict key, a cycle, a tensor outside its storage,
            a missing storage, truncation …).
    """
    path = Path(path)
    what = safe_text(path.name)
    lim = limits()
    size = path.stat().st_size
    if size > lim.max_file_bytes:
        raise BudgetError(f"{what} is {size / 1e9:.1f} GB, over the {lim.max_file_bytes / 1e9:.1f} GB limit")
    try:
        if zipfile.is_zipfile(path):
            _scan_zip(path, what, size)
        else:
            _scan_legacy(path.read_bytes(), what)
    except (PickleVMUnsafe, PickleVMError) as exc:
        raise CheckpointError(f"{what} is a malformed torch archive ({exc})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, TypeError,
            OverflowError, IndexError) as exc:
        if isinstance(exc, (CheckpointError, FileNotFoundError)):
            raise
        raise CheckpointError(f"{what} is a truncated or corrupt torch archive ({type(exc).__name__}: "
                              f"{safe_text(exc, 120)})") from None


def _scan_zip(path: Path, what: str, size: int) -> None:
    lim = limits()
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if len(infos) > lim.max_tensors + 64:
            raise BudgetError(f"{what} holds {len(infos)} archive entries; refused")
        inflated = sum(i.file_size for i in infos)
        if inflated > lim.max_inflated_bytes or (inflated > 64 << 20 and inflated > lim.max_inflate_ratio * size):
            raise BudgetError(f"{what} inflates to {inflated / 1e9:.1f} GB from {size / 1e6:.1f} MB; refused")
        pkls = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if len(pkls) != 1:
            raise CheckpointError(f"{what} is a zip file but not a torch archive (no single data.pkl)")
        prefix = pkls[0].filename[: -len("data.pkl")]
        storages, shapes, _ = _dry_run(z.read(pkls[0]), 0, what)
        entries = {i.filename: i for i in infos}
        for st in storages:
            info = entries.get(f"{prefix}data/{st.key}")
            if info is None:
                raise CheckpointError(f"{what}: storage {safe_text(st.key)} is missing from the archive")
            if info.file_size < st.numel * st.itemsize:
                raise CheckpointError(f"{what}: storage {safe_text(st.key)} is shorter than its {st.numel} elements")
    check_shapes(shapes, what)


def _scan_legacy(data: bytes, what: str) -> None:
    pos = 0
    for _ in range(3):  # magic number, protocol version, system info: plain values
        value, pos = run_pickle(data, {}, pos=pos)
        if _ == 0 and value != LEGACY_TORCH_MAGIC:
            raise CheckpointError(f"{what} is not a torch archive (wrong magic number)")
    _, shapes, pos = _dry_run(data, pos, what)
    check_shapes(shapes, what)


def _one_line(text: object, limit: int = 160) -> str:
    line = " ".join(str(text).split()).split(" This is an internal miniz error")[0]
    return safe_text(line, limit)


def load_torch_archive(path: str | Path, extra_globals: tuple[type, ...] = (argparse.Namespace,)) -> Any:
    """Scan (:func:`scan_torch_archive`), then ``torch.load(path, weights_only=True)`` on CPU.

    Args:
        path: a ``torch.save`` file (zip or legacy format).
        extra_globals: classes added to torch's weights-only allow-list (default: ``argparse.Namespace``,
            the ``args`` of training checkpoints).

    Raises:
        UnsafePickleError: the pickle names a global outside torch's allow-list (nothing from it ran).
        BudgetError / CheckpointError: see :func:`scan_torch_archive`; or torch could not read it.
    """
    from clipstyle.generator.formats.safe_pickle import UnsafePickleError

    path = Path(path)
    what = safe_text(path.name)
    scan_torch_archive(path)
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        m = re.search(r"GLOBAL ([\w.]+)", msg)
        if m:
            raise UnsafePickleError(f"refusing to load {what}: its pickle names the global {safe_text(m.group(1))}, "
                                    f"which is not on the allow-list (nothing from the file ran)") from None
        m = re.search(r"WeightsUnpickler error: ([^\n]*)", msg)
        if m and "Unsupported" in m.group(1):
            raise UnsafePickleError(f"refusing to load {what}: {_one_line(m.group(1), 300)} "
                                    f"(nothing from the file ran)") from None
        raise CheckpointError(f"{what} is a corrupt torch archive ({_one_line(msg)})") from None
    except MemoryError:
        raise BudgetError(f"{what} needs more memory than is available; refused") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError, TypeError,
            AttributeError, OverflowError, RecursionError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CheckpointError(f"{what} is a truncated or corrupt torch archive "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None


