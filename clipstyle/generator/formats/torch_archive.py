"""The one door for every ``torch.save`` file clipstyle reads (zip or legacy), budgets checked first.

Networks (rosinality, lernapparat, e4e's decoder), e4e encoders, ArcFace identity weights, LPIPS weights, CLIP
checkpoints, latent and direction ``.pt`` files: all of them are read by :func:`load_torch` and by nothing
else (``grep torch.load clipstyle`` finds only this module).

``torch.load(weights_only=True)`` already refuses globals outside torch's allow-list, but it hashes any
dict key, nests containers without limit, inflates zip entries, allocates every storage a persistent id
declares and clones tensors whatever their strides. :func:`load_torch` therefore first *dry-runs* every
pickle torch will read through our own interpreter (:mod:`.pickle_vm`), with one :class:`~.pickle_vm.PickleBudget`
for the whole file, building nothing heavy:

* **zip archives** (torch's own rule decides the format: the file starts with a zip local header):
  entries are matched the way torch's reader (miniz) matches them, ASCII-case-insensitively, under the
  folder of the first entry; two entries whose names differ only by case (or are equal) are refused,
  since which one torch would read is not ours to guess; only stored and deflated entries (what torch
  reads); the declared inflated size and ratio are bounded before anything is inflated, and ``data.pkl``
  is inflated with a bounded read checked against its declared size;
* **legacy files**: all five pickles (magic number, protocol, system info, the object, the storage
  keys), then each storage's element count and bytes against the file;
* in both: container depth, object count, walked size (shared sub-structures counted each time),
  dict keys (strings and numbers only), that every tensor fits inside its storage (no zero-stride
  amplification), that every storage exists with its declared size, and the total bytes of tensors
  and storages (:mod:`.budget`).

Only then does ``torch.load(weights_only=True)`` read the file.
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

from clipstyle.generator.formats.budget import BudgetError, Limits, check_shapes, limits
from clipstyle.generator.formats.common import CheckpointError, safe_text
from clipstyle.generator.formats.pickle_vm import (
    Global,
    Pending,
    PickleBudget,
    PickleVMError,
    PickleVMUnsafe,
    register_dict_type,
    run_pickle,
)
from clipstyle.io.arrays import (
    ArrayBudgetError,
    ArrayFileError,
    raw_name,
    read_zip_entry,
    zip_entries,
)

__all__ = ["load_torch", "load_torch_archive", "scan_torch_archive"]

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


def _dry_run(data: bytes, pos: int, what: str, budget: PickleBudget, lim: Limits
             ) -> tuple[dict[str, _Storage], list[tuple[tuple[int, ...], int]], int]:
    storages: dict[str, _Storage] = {}
    shapes: list[tuple[tuple[int, ...], int]] = []
    storage_bytes = [0]

    def persistent_load(pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{what}: unexpected persistent id in the archive")
        stype, key, numel = pid[1], pid[2], pid[4]
        m = re.fullmatch(r"torch\.(\w+)Storage", getattr(stype, "name", ""))
        itemsize = _ITEMSIZE.get(m.group(1), 1) if m else 1
        if type(key) is not str or len(key) > 256 or type(numel) is not int or numel < 0:
            raise CheckpointError(f"{what}: malformed storage record in the archive")
        st = storages.get(key)
        if st is None:
            st = storages[key] = _Storage(key, numel, itemsize)
            storage_bytes[0] += numel * itemsize  # torch allocates each storage as its id is read
            if storage_bytes[0] > lim.max_tensor_bytes:
                raise BudgetError(f"{what} declares more than {lim.max_tensor_bytes / 1e9:.1f} GB of tensor "
                                  f"storage; refused (set CLIPSTYLE_MAX_CHECKPOINT_BYTES to raise the limit)")
        elif (st.numel, st.itemsize) != (numel, itemsize):
            raise CheckpointError(f"{what}: storage {safe_text(key)} is declared twice with different sizes")
        return st

    def on_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _Opaque:
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"{what}: a tensor without a storage")
        ok = (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= lim.max_ndim
              and all(type(v) is int and v >= 0 for v in size + stride) and type(offset) is int and offset >= 0)
        if not ok:
            raise CheckpointError(f"{what}: a tensor with an invalid shape or stride")
        numel = math.prod(size)
        need = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if numel else 0
        if need > storage.numel or numel > storage.numel:
            raise CheckpointError(f"{what}: a tensor of shape {list(size)[:8]} extends past (or repeats) its "
                                  f"storage of {storage.numel} elements; refused")
        shapes.append((size, storage.itemsize))
        if len(shapes) > lim.max_tensors:
            raise BudgetError(f"{what} holds more than {lim.max_tensors} tensors; refused")
        return _Opaque()

    _, end = run_pickle(data, _DryTable(on_tensor), pos=pos, persistent_load=persistent_load, lim=lim,
                        budget=budget)
    return storages, shapes, end


def _limits_of(budget: Limits | None) -> Limits:
    return budget if budget is not None else limits()


def scan_torch_archive(path: str | Path, budget: Limits | None = None, what: str | None = None) -> None:
    """Check a ``torch.save`` file's structure and sizes without building it (see the module docstring).

    Args:
        path: the file.
        budget: the :class:`~.budget.Limits` to hold it to (default :func:`~.budget.limits`).
        what: how messages name the file (default: its name, escaped).

    Raises:
        BudgetError: over a size/count/ratio limit.
        CheckpointError: malformed structure (a non-plain dict key, a cycle, a tensor outside its storage,
            a missing storage, entries whose names differ only by case, truncation …).
        FileNotFoundError: no such file.
    """
    path = Path(path)
    what = what or safe_text(path.name)
    lim = _limits_of(budget)
    size = path.stat().st_size
    if size > lim.max_file_bytes:
        raise BudgetError(f"{what} is {size / 1e9:.1f} GB, over the {lim.max_file_bytes / 1e9:.1f} GB limit")
    pickles = PickleBudget(lim)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":  # torch's own test (serialization._is_zipfile): a zip local header first
            _scan_zip(path, what, size, pickles, lim)
        else:
            _scan_legacy(path.read_bytes(), what, pickles, lim)
    except (PickleVMUnsafe, PickleVMError) as exc:
        raise CheckpointError(f"{what} is a malformed torch archive ({exc})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, TypeError,
            OverflowError, IndexError, RuntimeError, NotImplementedError) as exc:
        if isinstance(exc, (CheckpointError, FileNotFoundError)):
            raise
        raise CheckpointError(f"{what} is a truncated or corrupt torch archive ({type(exc).__name__}: "
                              f"{safe_text(str(exc), 120)})") from None


_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def _zip_entries(z: zipfile.ZipFile, what: str, lim: Limits, size: int) -> dict[bytes, zipfile.ZipInfo]:
    """:func:`clipstyle.io.arrays.zip_entries` with the checkpoint budget, its errors as ours."""
    try:
        return zip_entries(z, what, size=size, max_entries=lim.max_tensors + 64,
                           max_inflated_bytes=lim.max_inflated_bytes, max_inflate_ratio=lim.max_inflate_ratio)
    except ArrayBudgetError as exc:
        raise BudgetError(str(exc)) from None
    except ArrayFileError as exc:
        raise CheckpointError(str(exc)) from None


def _read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    try:
        return read_zip_entry(z, info, what)
    except ArrayFileError as exc:
        raise CheckpointError(str(exc)) from None


def _scan_zip(path: Path, what: str, size: int, budget: PickleBudget, lim: Limits) -> None:
    with zipfile.ZipFile(path) as z:
        entries = _zip_entries(z, what, lim, size)
        first = raw_name(z.infolist()[0])
        if b"/" not in first:
            raise CheckpointError(f"{what} is a zip file but not a torch archive (its first entry is not in a folder)")
        prefix = first[: first.index(b"/") + 1].translate(_ASCII_LOWER)  # torch reads everything under it
        pkl = entries.get(prefix + b"data.pkl")
        if pkl is None:
            raise CheckpointError(f"{what} is a zip file but not a torch archive (no data.pkl)")
        storages, shapes, _ = _dry_run(_read_entry(z, pkl, what), 0, what, budget, lim)
        for st in storages.values():
            info = entries.get(prefix + b"data/" + st.key.encode("utf-8", "surrogatepass").translate(_ASCII_LOWER))
            if info is None:
                raise CheckpointError(f"{what}: storage {safe_text(st.key)} is missing from the archive")
            if info.file_size < st.numel * st.itemsize:
                raise CheckpointError(f"{what}: storage {safe_text(st.key)} is shorter than its {st.numel} elements")
    check_shapes(shapes, what, lim)


def _scan_legacy(data: bytes, what: str, budget: PickleBudget, lim: Limits) -> None:
    magic, pos = run_pickle(data, {}, pos=0, lim=lim, budget=budget)
    if magic != LEGACY_TORCH_MAGIC:
        raise CheckpointError(f"{what} is not a torch archive (wrong magic number)")
    for _ in range(2):  # protocol version, system info: plain values
        _, pos = run_pickle(data, {}, pos=pos, lim=lim, budget=budget)
    storages, shapes, pos = _dry_run(data, pos, what, budget, lim)
    keys, pos = run_pickle(data, {}, pos=pos, lim=lim, budget=budget)  # the storage keys torch reads next
    if not isinstance(keys, list) or not all(type(k) is str for k in keys):
        raise CheckpointError(f"{what}: the storage keys of the legacy archive are not a list of names")
    if len(set(keys)) != len(keys) or set(keys) != set(storages):
        raise CheckpointError(f"{what}: the storage keys of the legacy archive do not match its storages")
    for key in keys:  # each storage: an int64 element count, then its bytes
        st = storages[key]
        if pos + 8 > len(data):
            raise CheckpointError(f"{what}: storage {safe_text(key)} is missing (the file is truncated)")
        numel = int.from_bytes(data[pos:pos + 8], "little", signed=True)
        if numel != st.numel or pos + 8 + numel * st.itemsize > len(data):
            raise CheckpointError(f"{what}: storage {safe_text(key)} does not hold its {st.numel} elements")
        pos += 8 + numel * st.itemsize
    check_shapes(shapes, what, lim)


def _one_line(text: object, limit: int = 160) -> str:
    line = " ".join(str(text).split()).split(" This is an internal miniz error")[0]
    return safe_text(line, limit)


def load_torch(path: str | Path, *, budget: Limits | None = None, what: str | None = None,
               extra_globals: tuple[type, ...] = (argparse.Namespace,)) -> Any:
    """The one door: scan (:func:`scan_torch_archive`), then ``torch.load(path, weights_only=True)`` on CPU.

    Args:
        path: a ``torch.save`` file (zip or legacy format).
        budget: the :class:`~.budget.Limits` the file is held to (default :func:`~.budget.limits`, the
            network budget; latent and direction files pass smaller ones).
        what: how messages name the file (default: its name, escaped).
        extra_globals: classes added to torch's weights-only allow-list (default: ``argparse.Namespace``,
            the ``args`` of training checkpoints).

    Returns:
        What ``torch.load`` returns: tensors (CPU, whatever device they were saved from) in dicts, lists,
        tuples of plain values.

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: the pickle names a global outside torch's allow-list (nothing from the file ran).
        BudgetError / CheckpointError: see :func:`scan_torch_archive`; or torch could not read it.
    """
    from clipstyle.generator.formats.safe_pickle import UnsafePickleError

    path = Path(path)
    what = what or safe_text(path.name)
    scan_torch_archive(path, budget, what)
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


def load_torch_archive(path: str | Path, extra_globals: tuple[type, ...] = (argparse.Namespace,)) -> Any:
    """:func:`load_torch` with the network budget (kept for the readers that call it by this name)."""
    return load_torch(path, extra_globals=extra_globals)
