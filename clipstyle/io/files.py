"""Safe file writing: atomic writes, JSON/NPZ helpers, per-run output folders.

Every file clipstyle writes (images, GIFs, latents, ``run.json``, networks, downloaded weights)
goes through :func:`atomic_writer` or :func:`atomic_temp_path`: the data is written to a hidden
temporary file *in the destination folder*, flushed and ``fsync``-ed, then moved over the
destination with :func:`os.replace` — or, when the destination did not exist as the write began,
published with a hard link that fails if another process created it meanwhile (one writer wins,
the other gets :class:`OutputExistsError`). Every new file gets one mode, ``0o666 & ~umask``; a
replaced file keeps its mode. A crash, an exception or Ctrl-C therefore leaves either
the complete old file or the complete new file, never a truncated one, and the temporary file
is removed.

Nothing here keeps module-level mutable state.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import io
import json
import math
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from clipstyle.errors import UsageError

__all__ = [
    "InputPathError",
    "OutputExistsError",
    "atomic_save_npz",
    "atomic_temp_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_writer",
    "check_input_path",
    "exclusive_outputs",
    "make_run_dir",
    "refuse_overwrite",
    "slugify",
    "to_jsonable",
]

#: Longest slug :func:`slugify` produces (before any ``-0001`` suffix).
MAX_SLUG_LEN = 60
#: How many numbered siblings :func:`make_run_dir` tries before giving up.
MAX_RUN_DIRS = 100_000


class OutputExistsError(UsageError, FileExistsError):
    """An output path already exists and overwriting was not requested.

    A :class:`ValueError` (bad user input) and a :class:`FileExistsError`. ``str()`` is one line:
    ``"X exists; pass --overwrite or choose another path"``. The path is ``.path``.
    """

    def __init__(self, path: str | os.PathLike[str]):
        ValueError.__init__(self, f"{Path(path)} exists; pass --overwrite or choose another path")
        self.path = Path(path)


def refuse_overwrite(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check that writing ``path`` would not silently replace something.

    Args:
        path: the output file or folder about to be written.
        overwrite: the user's ``--overwrite`` flag; when true any existing path is accepted.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` exists (file, folder or dangling symlink) and
            ``overwrite`` is false.
    """
    p = Path(path)
    if not overwrite and (p.exists() or p.is_symlink()):
        raise OutputExistsError(p)
    return p


# --------------------------------------------------------------------------- atomic writes


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # fallback: the classic set-and-restore
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """Permissions for the new file: keep an existing file's mode, else ``0o666 & ~umask``."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    """Best-effort ``fsync`` of a folder so a rename survives a power loss (no-op where unsupported)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


_EXCLUSIVE: contextvars.ContextVar[set[Path] | None] = contextvars.ContextVar("clipstyle_exclusive_outputs",
                                                                              default=None)


@contextlib.contextmanager
def exclusive_outputs(paths: Iterable[str | os.PathLike[str]]) -> Iterator[None]:
    """Within the block, the first write of each of ``paths`` *creates* it: if another process created the
    file in the meantime (after the command checked that it was free), the write raises
    :class:`OutputExistsError` instead of replacing the other's file. Later writes of the same path (a file
    the block itself wrote, e.g. arrays added to a latent file) replace as usual.

    The CLI wraps every command whose ``--out`` is not ``--overwrite`` in this (``cli/common.py``). The state is
    a :class:`contextvars.ContextVar`, reset when the block ends.
    """
    token = _EXCLUSIVE.set({Path(p).absolute() for p in paths})
    try:
        yield
    finally:
        _EXCLUSIVE.reset(token)


def _claimed(dest: Path) -> bool:
    """Whether this write is the first of a path under :func:`exclusive_outputs` (and so must create it)."""
    pending = _EXCLUSIVE.get()
    key = dest.absolute()
    if pending and key in pending:
        pending.discard(key)
        return True
    return False


def _publish(tmp: Path, dest: Path, replace: bool) -> None:
    """Move the finished ``tmp`` to ``dest``.

    ``replace`` (``dest`` existed when the write began, so the caller meant to replace it): ``os.replace``.
    Otherwise the file is *created*: published with ``os.link``, which fails if another process created
    ``dest`` meanwhile — then :class:`OutputExistsError` is raised and the other file is kept, so of two
    processes writing one new path, one wins and the other fails cleanly. Where hard links are not
    supported, ``dest`` is claimed with ``O_CREAT | O_EXCL`` before the rename.
    """
    if _claimed(dest):
        replace = False
    if replace:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputExistsError(dest) from None
    except OSError:  # no hard links here (FAT, some network file systems)
        try:
            os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise OutputExistsError(dest) from None
        os.replace(tmp, dest)
        return
    _remove_quietly(tmp)


def _naming(exc: OSError, tmp: Path, dest: Path) -> OSError:
    """``exc`` naming ``dest`` when it names no file or our temporary file (a full disk says which file it was
    writing, never ``[Errno 28] No space left on device`` alone)."""
    if exc.errno is None or not exc.strerror or (exc.filename is not None and Path(exc.filename) != tmp):
        return exc
    return OSError(exc.errno, exc.strerror, str(dest))  # the errno's own subclass (PermissionError…)


@contextlib.contextmanager
def _cleaned_up(tmp: Path, dest: Path) -> Iterator[None]:
    """The failure path of both atomic writers: ``tmp`` is removed on any exception (Ctrl-C included) and an
    OSError comes back naming the file being written (disk full: which path)."""
    try:
        yield
    except OSError as exc:
        _remove_quietly(tmp)
        named = _naming(exc, tmp, dest)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_temp_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it over ``path`` atomically.

    For writers that insist on a file *name* (e.g. ffmpeg). The temporary file keeps
    ``path``'s suffix so format detection by extension still works. It is created empty
    (exclusively, so no other process can own the name) and may be overwritten by the writer.

    Args:
        path: the final destination. Its parent folder must exist.

    Yields:
        The temporary :class:`~pathlib.Path` to write.

    Raises:
        FileNotFoundError: the parent folder does not exist.
        Whatever the body raises; the temporary file is removed first (also on
        ``KeyboardInterrupt``) and ``path`` is left untouched.
    """
    dest = Path(path)
    replace = dest.exists()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    with _cleaned_up(tmp, dest):
        yield tmp
        os.chmod(tmp, _final_mode(dest))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _publish(tmp, dest, replace)
    _fsync_dir(dest.parent)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb", encoding: str = "utf-8",
                  permissions: int | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on a clean exit it atomically replaces ``path``.

    The temporary file lives in ``path``'s folder (so :func:`os.replace` never crosses file
    systems), is flushed and ``fsync``-ed before the rename, and gets the permissions of the
    file it replaces (or ``0o666 & ~umask`` for a new file).

    Args:
        path: the final destination. Its parent folder must exist.
        mode: ``"wb"`` (default) or ``"w"`` for text.
        encoding: text encoding when ``mode == "w"``.
        permissions: a mask the final permissions are cut to (``0o600``: owner only), e.g. the mode of the
            file a copy was made from, so a copy is never more readable than its source.

    Yields:
        The open file object.

    Raises:
        ValueError: ``mode`` is not ``"w"`` or ``"wb"``.
        FileNotFoundError: the parent folder does not exist.
        Whatever the body raises; the temporary file is removed (also on
        ``KeyboardInterrupt``) and ``path`` keeps its old content.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer mode must be 'w' or 'wb', got {mode!r}")
    dest = Path(path)
    replace = dest.exists()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    with _cleaned_up(tmp, dest):
        kwargs: dict[str, Any] = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _final_mode(dest) & (0o7777 if permissions is None else permissions))
        _publish(tmp, dest, replace)
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`). Returns ``Path(path)``."""
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default, no newline translation). Returns the path."""
    with atomic_writer(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


# --------------------------------------------------------------------------- JSON / NPZ


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively into plain JSON types.

    Handles dicts (keys become strings), lists/tuples/sets, :class:`~pathlib.Path`, dataclass
    instances, enums, dates, NumPy scalars/arrays and torch tensors (via ``.tolist()``), and
    bytes (decoded as UTF-8 with replacement). Non-finite floats (NaN, ±inf) become ``None``
    so the output is strict JSON. Anything else becomes ``str(obj)``.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "tolist"):  # torch.Tensor
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy array or scalar
        return to_jsonable(obj.tolist())
    return str(obj)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as strict, indented UTF-8 JSON (trailing newline), atomically.

    ``obj`` is first passed through :func:`to_jsonable`, so NumPy values, tensors, paths and
    dataclasses are fine and NaN/inf become ``null``. Returns ``Path(path)``.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_save_npz(path: str | os.PathLike[str], /, *, compressed: bool = False, **arrays: Any) -> Path:
    """Save arrays to an ``.npz`` file atomically (like :func:`numpy.savez`).

    Args:
        path: destination; written exactly as given (NumPy's automatic ``.npz`` suffix is not added).
        compressed: use :func:`numpy.savez_compressed` (so no array may be named ``compressed``).
        **arrays: name → array-like. Torch tensors are detached and moved to CPU first.
            Strings are stored as 0-d unicode arrays (read back with ``str(f[key])``).

    Returns:
        ``Path(path)``.
    """
    import numpy as np

    prepared = {}
    for key, value in arrays.items():
        if hasattr(value, "detach") and hasattr(value, "cpu"):
            value = value.detach().cpu().numpy()
        prepared[key] = np.asarray(value)
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **prepared)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- run folders


def slugify(text: str, max_len: int = MAX_SLUG_LEN, fallback: str = "run") -> str:
    """A folder-safe slug: lowercase ASCII letters, digits and single dashes, at most ``max_len`` chars.

    Accents are stripped (``"Café"`` → ``"cafe"``); prompt syntax such as weights and ``@image``
    references just becomes dashes. Cuts prefer a word boundary. Returns ``fallback`` when
    nothing usable is left (e.g. an all-emoji or non-Latin prompt).
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:
        cut = slug[: max_len + 1]
        slug = cut.rsplit("-", 1)[0] if "-" in cut[max_len // 2 :] else cut[:max_len]
        slug = slug.strip("-")
    return slug or fallback


def make_run_dir(outdir: str | os.PathLike[str], name: str) -> Path:
    """Create and return a NEW folder for one run: ``outdir/<slug>``, else ``<slug>-0001``, ``-0002`` …

    ``outdir`` (and its parents) are created if needed. Each candidate is claimed with an
    exclusive :func:`os.mkdir`, so concurrent runs never share a folder and an existing folder
    is never reused.

    Args:
        outdir: parent folder for runs.
        name: usually the prompt; turned into a slug with :func:`slugify` (fallback ``"run"``).

    Returns:
        The freshly created, empty folder.

    Raises:
        NotADirectoryError / PermissionError: ``outdir`` cannot be created or written.
        RuntimeError: more than :data:`MAX_RUN_DIRS` folders with this slug already exist.
    """
    parent = Path(outdir)
    parent.mkdir(parents=True, exist_ok=True)
    slug = slugify(name)
    for i in range(MAX_RUN_DIRS):
        candidate = parent / (slug if i == 0 else f"{slug}-{i:04d}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"too many runs named {slug!r} in {parent}; choose another --outdir")


# --------------------------------------------------------------------------- input paths


class InputPathError(UsageError):
    """A path given as an input file that is missing, a folder, a FIFO, a device, a socket or unreadable
    (a usage error, exit 2). ``str()`` is one line saying what the path is."""


def check_input_path(path: str | os.PathLike[str], what: str = "file", option: str | None = None) -> Path:
    """The one check of every input file option: ``path`` must be a readable regular file.

    Looks at the path with :func:`os.stat` only — never opens it, so a FIFO cannot block and a device is
    never read. Symbolic links are followed.

    Args:
        path: the path as the user gave it (``~`` is expanded).
        what: what the file should be, for the message (``"image"``, ``"latent file"`` …).
        option: the option or argument that named it (``"--encoder"``), or ``None``.

    Returns:
        The expanded :class:`~pathlib.Path`.

    Raises:
        InputPathError: missing ("no such latent file: x.npz (--latents)"), or a folder, a named pipe, a device,
            a socket, or a file that cannot be read — each said in one line.
    """
    p = Path(path).expanduser()
    where = f" ({option})" if option else ""
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise InputPathError(f"no such {what}: {p}{where}") from None
    except PermissionError:
        raise InputPathError(f"{p} cannot be read (permission denied on a folder above it){where}") from None
    except OSError as exc:
        raise InputPathError(f"{p} cannot be read ({exc.strerror or type(exc).__name__}){where}") from None
    mode = st.st_mode
    kind = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else None if stat.S_ISREG(mode) else "not a regular file")
    if kind is not None:
        label = f"{option} {p}" if option and option.startswith("-") else str(p)
        raise InputPathError(f"{label} is {kind}, not a {what}")
    if not os.access(p, os.R_OK):
        raise InputPathError(f"{p} cannot be read (permission denied){where}")
    return p
