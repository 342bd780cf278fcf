"""Budgeted readers of NumPy ``.npy``/``.npz`` files and of zip archives in general (no pickle, no torch).

``np.load`` trusts a file's header: an ``.npz`` member compressed with bzip2 can declare and inflate to
gigabytes from a kilobyte, and every member is inflated whole when read. These readers check before any
allocation:

* zip archives (:func:`zip_entries`): the entry count, names (no control characters, no two names equal
  but for ASCII case: readers that match case-insensitively would pick one we did not check), the
  compression method (stored or deflated: what ``np.savez``/``np.savez_compressed`` and ``torch.save``
  write), and the declared inflated size and ratio; an entry is then inflated with a bounded read of
  exactly its declared size (:func:`read_zip_entry`);
* ``.npy`` headers (:func:`read_npy`, :func:`read_npz`): a plain numeric (or short string) dtype, at most
  8 dimensions, and bytes matching the shape exactly, all within :class:`ArrayLimits`; members are opened
  and read one at a time.

This module imports nothing of ours.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["ArrayBudgetError", "ArrayFileError", "ArrayLimits", "array_limits", "raw_name", "read_npy", "read_npz",
           "read_zip_entry", "zip_entries"]


class ArrayFileError(ValueError):
    """An array or archive file that is malformed (one line, naming the file)."""


class ArrayBudgetError(ArrayFileError):
    """An array or archive file that asks for more memory than the budget allows (nothing was allocated)."""


@dataclass(frozen=True)
class ArrayLimits:
    """Budgets of one array file (inclusive upper bounds).

    Attributes:
        max_bytes: bytes of all arrays of the file together (default 1 GiB; ``CLIPSTYLE_MAX_ARRAY_BYTES``).
        max_inflated_bytes: bytes a zip inflates to, together.
        max_inflate_ratio: inflated / file size, checked beyond 64 MiB inflated.
        max_entries: members of one archive.
        max_ndim: dimensions of one array.
        max_string_items: characters of a string array (``meta`` JSON).
    """

    max_bytes: int = 1 << 30
    max_inflated_bytes: int = 1 << 30
    max_inflate_ratio: int = 50
    max_entries: int = 4096
    max_ndim: int = 8
    max_string_items: int = 16 << 20


def array_limits() -> ArrayLimits:
    """The limits in force: ``CLIPSTYLE_MAX_ARRAY_BYTES`` (bytes) raises both byte budgets."""
    env = os.environ.get("CLIPSTYLE_MAX_ARRAY_BYTES", "").strip()
    if env.isdigit() and int(env) > 0:
        return ArrayLimits(max_bytes=int(env), max_inflated_bytes=int(env))
    return ArrayLimits()


def _safe(text: str, limit: int = 60) -> str:
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text[:limit])
    return out + ("…" if len(text) > limit else "")


_ASCII_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def raw_name(info: zipfile.ZipInfo) -> bytes:
    """An entry's name as the bytes stored in the archive (what readers written in C compare)."""
    enc = "utf-8" if info.flag_bits & 0x800 else "cp437"
    try:
        return info.orig_filename.encode(enc)
    except UnicodeEncodeError:
        return info.orig_filename.encode("utf-8", "surrogatepass")


def zip_entries(z: zipfile.ZipFile, what: str, *, size: int, max_entries: int, max_inflated_bytes: int,
                max_inflate_ratio: int,
                methods: tuple[int, ...] = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)) -> dict[bytes, zipfile.ZipInfo]:
    """The entries of an open zip by ASCII-lower-cased raw name, checked before anything is inflated.

    Args:
        z: the open archive; what: its name for messages; size: the file's size in bytes.
        max_entries, max_inflated_bytes, max_inflate_ratio: the budgets (the ratio is checked beyond
            64 MiB inflated); methods: the compression methods accepted.

    Raises:
        ArrayBudgetError: too many entries, or a declared inflated size over the budget or ratio.
        ArrayFileError: no entries, a name with control characters, two names equal but for ASCII case,
            a compression method outside ``methods``.
    """
    infos = z.infolist()
    if not infos:
        raise ArrayFileError(f"{what} is an empty zip archive")
    if len(infos) > max_entries:
        raise ArrayBudgetError(f"{what} holds {len(infos)} archive entries (at most {max_entries}); refused")
    entries: dict[bytes, zipfile.ZipInfo] = {}
    inflated = 0
    for info in infos:
        raw = raw_name(info)
        if any(b < 0x20 or b == 0x7F for b in raw):
            raise ArrayFileError(f"{what}: an archive entry name holds control characters; refused")
        low = raw.translate(_ASCII_LOWER)
        if low in entries:
            raise ArrayFileError(f"{what}: two archive entries are named {_safe(info.filename)} (ignoring case); "
                                 f"refused")
        entries[low] = info
        if info.compress_type not in methods:
            raise ArrayFileError(f"{what}: archive entry {_safe(info.filename)} uses compression method "
                                 f"{info.compress_type}; only {', '.join(str(m) for m in methods)} "
                                 f"(stored, deflated) are read")
        inflated += max(int(info.file_size), 0)
    if inflated > max_inflated_bytes or (inflated > 64 << 20 and inflated > max_inflate_ratio * max(size, 1)):
        raise ArrayBudgetError(f"{what} inflates to {inflated / 1e6:.1f} MB from {size / 1e6:.3f} MB (declared); "
                               f"refused (at most {max_inflated_bytes / 1e6:.0f} MB, {max_inflate_ratio}x)")
    return entries


def read_zip_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """Inflate one entry with a bounded read of exactly its declared size (its CRC is checked at the end).

    Raises:
        ArrayFileError: the entry inflates to more or fewer bytes than declared, or is corrupt/encrypted.
    """
    with z.open(info) as f:
        data = f.read(int(info.file_size) + 1)
    if len(data) != info.file_size:
        raise ArrayFileError(f"{what}: archive entry {_safe(info.filename)} does not inflate to its declared "
                             f"{info.file_size} bytes; refused")
    return data


def _header(f: IO[bytes], what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(f, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(f, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # noqa: BLE001 - NumPy's header parser raises ValueError, SyntaxError, TokenError…
        raise ArrayFileError(f"{what} has a malformed .npy header ({_safe(' '.join(str(exc).split()), 100)})") \
            from None
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _check(shape: tuple[int, ...], dtype: np.dtype, what: str, lim: ArrayLimits, spent: int) -> int:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ArrayFileError(f"{what} holds an array of dtype {_safe(str(dtype))}; only plain numbers and strings "
                             f"are read (nothing is unpickled)")
    if dtype.kind not in "biufcUS":
        raise ArrayFileError(f"{what} holds an array of dtype {_safe(str(dtype))}; only numbers and strings are read")
    if len(shape) > lim.max_ndim or any(s < 0 for s in shape):
        raise ArrayFileError(f"{what} declares an array of shape {list(shape)[:10]}; refused")
    n = 1
    for s in shape:
        n *= s
    if dtype.kind in "US" and n * max(dtype.itemsize, 1) > lim.max_string_items * 4:
        raise ArrayBudgetError(f"{what} declares a string array of {n} items; refused")
    nbytes = n * dtype.itemsize
    if spent + nbytes > lim.max_bytes:
        raise ArrayBudgetError(f"{what} declares {(spent + nbytes) / 1e6:.1f} MB of arrays, over the "
                               f"{lim.max_bytes / 1e6:.0f} MB budget; refused (set CLIPSTYLE_MAX_ARRAY_BYTES to "
                               f"raise it)")
    return nbytes


def _read_array(f: IO[bytes], available: int, what: str, lim: ArrayLimits, spent: int) -> tuple[np.ndarray, int]:
    """One ``.npy`` stream of ``available`` bytes (header included) → (array, its bytes)."""
    start = f.tell() if f.seekable() else 0
    shape, fortran, dtype = _header(f, what)
    used = (f.tell() - start) if f.seekable() else None
    nbytes = _check(shape, dtype, what, lim, spent)
    if used is not None and available - used != nbytes:
        raise ArrayFileError(f"{what}: the array of shape {list(shape)} needs {nbytes} bytes but the file holds "
                             f"{available - used}; refused")
    buf = bytearray(nbytes)
    got = f.readinto(buf) if nbytes else 0
    if got != nbytes:
        raise ArrayFileError(f"{what} is truncated ({got} of {nbytes} bytes)")
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, nbytes


def read_npy(path: str | os.PathLike[str], limits: ArrayLimits | None = None, what: str | None = None) -> np.ndarray:
    """A ``.npy`` file → array, its header checked against the budget and the file size before reading.

    Raises:
        ArrayBudgetError: over :class:`ArrayLimits`; ArrayFileError: malformed, an object/structured dtype,
            bytes not matching the shape; FileNotFoundError: no such file.
    """
    path = Path(path)
    what = what or _safe(path.name)
    lim = limits or array_limits()
    with open(path, "rb") as f:
        return _read_array(f, path.stat().st_size, what, lim, 0)[0]


def read_npz(path: str | os.PathLike[str], limits: ArrayLimits | None = None, what: str | None = None
             ) -> dict[str, np.ndarray]:
    """An ``.npz`` archive → ``{name: array}``; members checked first, then opened and read one at a time.

    Members whose names do not end in ``.npy`` are not read (``np.savez`` writes only ``.npy`` members).

    Raises:
        ArrayBudgetError / ArrayFileError: see :func:`zip_entries` and :func:`read_npy`.
    """
    path = Path(path)
    what = what or _safe(path.name)
    lim = limits or array_limits()
    size = path.stat().st_size
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as z:
            entries = zip_entries(z, what, size=size, max_entries=lim.max_entries,
                                  max_inflated_bytes=lim.max_inflated_bytes, max_inflate_ratio=lim.max_inflate_ratio)
            spent = 0
            for info in entries.values():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[: -len(".npy")]
                with z.open(info) as f:
                    head = f.read(min(int(info.file_size), 10_240 + 16))
                    probe = io.BytesIO(head)
                    shape, fortran, dtype = _header(probe, f"{what}:{_safe(name)}")
                    used = probe.tell()
                    nbytes = _check(shape, dtype, f"{what}:{_safe(name)}", lim, spent)
                    if info.file_size - used != nbytes:
                        raise ArrayFileError(f"{what}: member {_safe(name)} of shape {list(shape)} needs {nbytes} "
                                             f"bytes but declares {info.file_size - used}; refused")
                    buf = bytearray(nbytes)
                    mv = memoryview(buf)
                    rest = head[used:]
                    mv[: len(rest)] = rest
                    got = len(rest)
                    while got < nbytes:
                        n = f.readinto(mv[got:])
                        if not n:
                            break
                        got += n
                    if got != nbytes or f.read(1):
                        raise ArrayFileError(f"{what}: member {_safe(name)} does not inflate to its declared size")
                arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
                if not arr.dtype.isnative:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
                spent += nbytes
                out[name] = arr
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, RuntimeError, NotImplementedError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ArrayFileError(f"{what} is a truncated or corrupt zip archive ({type(exc).__name__}: "
                             f"{_safe(' '.join(str(exc).split()), 100)})") from None
    return out

