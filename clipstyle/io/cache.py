"""Download-once cache for network pickles and other weights.

:func:`fetch` turns a *source* into a local file path:

* a local path is checked and returned unchanged (never copied, never modified);
* a ``file://``, ``http://`` or ``https://`` URL is downloaded once into the cache folder
  (``cache_dir`` argument, else ``$CLIPSTYLE_CACHE``, else ``platformdirs.user_cache_dir("clipstyle")``)
  and the cached file is returned on every later call without touching the network.

Downloads stream in chunks with a rich progress bar, hash the bytes with SHA-256 while
streaming, land in a temporary file in the cache folder and are renamed into place only when
complete (and, if a checksum was given, correct). A lock file makes concurrent processes wait
for one download instead of racing. Every failure is a :class:`DownloadError` whose message is
one line naming the URL and telling the user how to supply the file by hand.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from clipstyle.io.files import atomic_write_text, atomic_writer
from clipstyle.io.offline import offline_reason, reachable
from clipstyle.errors import UserRuntimeError

__all__ = [
    "DEFAULT_HINT",
    "DownloadError",
    "MissingFileError",
    "cache_root",
    "cached_path_for",
    "fetch",
    "is_url",
    "quarantine",
    "sha256_file",
]

#: What the user is told to do when a network cannot be downloaded.
DEFAULT_HINT = "download it yourself and pass a local file with --network PATH"
#: Environment variable that overrides the cache folder.
CACHE_ENV = "CLIPSTYLE_CACHE"
#: URL schemes :func:`fetch` downloads.
URL_SCHEMES = ("http", "https", "file")
CHUNK_SIZE = 1 << 20
#: errno values that mean "our disk", not "the network".
_LOCAL_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG") if hasattr(errno, name)
)
USER_AGENT = "clipstyle (python-urllib)"
#: Default size cap of one download (bytes); ``$CLIPSTYLE_MAX_DOWNLOAD_BYTES`` overrides it.
MAX_DOWNLOAD_BYTES = 8 << 30
#: Default limit on the whole transfer (seconds), on top of the per-read ``timeout``;
#: ``$CLIPSTYLE_DOWNLOAD_TIME_LIMIT`` overrides it.
TOTAL_TIME_LIMIT = 4 * 3600.0


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value and float(value) > 0 else default
    except ValueError:
        return default


class DownloadError(UserRuntimeError):
    """A source could not be fetched. ``str()`` is a single line; ``.url`` and ``.hint`` are kept."""

    def __init__(self, url: str, reason: str, hint: str | None = DEFAULT_HINT):
        self.url = url
        self.reason = " ".join(str(reason).split())  # force one line
        self.hint = hint
        message = f"cannot fetch {url}: {self.reason}"
        if hint:
            message += f"; {hint}"
        super().__init__(message)


class MissingFileError(DownloadError, FileNotFoundError):
    """A local source path does not exist. ``str()`` is ``"no such file: X"``; also a :class:`FileNotFoundError`."""

    def __init__(self, path: str):
        RuntimeError.__init__(self, f"no such file: {path}")
        self.url = path
        self.reason = f"no such file: {path}"
        self.hint = None


def is_url(source: str) -> bool:
    """True if ``source`` looks like ``scheme://…`` with a scheme of two or more letters.

    (One-letter "schemes" are Windows drive letters, e.g. ``C:\\nets\\ffhq.pkl``.)
    """
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", source) is not None


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$CLIPSTYLE_CACHE``, else the platform cache dir.

    The folder is not created here.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("clipstyle"))


def cached_path_for(url: str, cache_dir: str | os.PathLike[str] | None = None, subdir: str = "downloads") -> Path:
    """Where :func:`fetch` stores ``url``: ``<cache>/<subdir>/<stem>-<hash10><suffix>``.

    The stem and suffix come from the URL's last path component (made file-name safe); the
    hash is the first 10 hex digits of SHA-256 of the whole URL, so two URLs that end in the
    same name (``…/stylegan2/ffhq.pkl`` vs ``…/stylegan3/ffhq.pkl``) never collide.
    """
    base = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "download"
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem or len(suffix) > 16:
        stem, suffix = base, ""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    name = f"{stem[:80]}-{digest}" + (f".{suffix}" if suffix else "")
    return cache_root(cache_dir) / subdir / name


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    with contextlib.suppress(OSError, IndexError):
        return _sidecar(path).read_text(encoding="ascii").split()[0].lower()
    return None


def _open_url(url: str, timeout: float) -> Any:
    """Open ``url`` for reading (urllib). A separate function so tests can count or stub calls."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


@contextlib.contextmanager
def _file_lock(lock_path: Path, url: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if needed, removed on release).

    POSIX uses ``fcntl.flock``; the lock file is unlinked while still held and a waiter that
    wakes up holding a stale (unlinked) inode retries. Elsewhere an ``O_EXCL`` lock file is
    polled (a lock older than one hour is considered abandoned).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        fcntl = None  # type: ignore[assignment]
    told = False
    if fcntl is not None:
        while True:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not told:
                        print(f"waiting for another process downloading {url} ...", file=sys.stderr)
                        told = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    continue  # the holder removed that lock file; take a fresh one
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(lock_path)
                return
            finally:
                os.close(fd)
    else:  # pragma: no cover - non-POSIX
        while True:
            try:
                os.close(os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                break
            except FileExistsError:
                with contextlib.suppress(OSError):
                    if time.time() - lock_path.stat().st_mtime > 3600:
                        lock_path.unlink()
                        continue
                if not told:
                    print(f"waiting for another process downloading {url} ...", file=sys.stderr)
                    told = True
                time.sleep(0.5)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()


def _describe_url_error(url: str, err: BaseException) -> str:
    """A short human reason for a urllib/socket failure."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}".strip()
    reason: Any = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, FileNotFoundError) or (url.startswith("file:") and isinstance(reason, OSError)):
        return f"no such file ({urllib.parse.unquote(urllib.parse.urlparse(url).path)})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out (offline or server not responding)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host (offline?): {reason}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (offline or wrong address?)"
    if isinstance(reason, OSError):
        return f"network error (offline?): {reason.strerror or reason}"
    return f"network error: {reason}"


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _stream(response: IO[bytes], out: IO[bytes], total: int | None, label: str, progress: bool,
            max_bytes: int | None = None, deadline: float | None = None) -> tuple[int, str]:
    """Copy ``response`` to ``out`` in chunks, hashing and (optionally) showing a progress bar.

    Stops with ``_TooLarge`` past ``max_bytes`` (or past ``total``, a server sending more than it
    announced) and with ``_TooSlow`` past ``deadline`` (``time.monotonic()``).

    Returns ``(bytes copied, sha256 hex)``.
    """
    h = hashlib.sha256()
    done = 0
    bar = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True)
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
        else:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            console.print(f"downloading {label}{size} ...", highlight=False, soft_wrap=True)
    with bar if bar is not None else contextlib.nullcontext():
        task = bar.add_task(label, total=total) if bar is not None else None
        read = getattr(response, "read1", None) or response.read  # read1: returns what has arrived
        while True:
            chunk = read(CHUNK_SIZE)
            if not chunk:
                break
            if max_bytes is not None and done + len(chunk) > max_bytes:
                raise _TooLarge()
            if total is not None and done + len(chunk) > total:
                raise _TooLarge()
            if deadline is not None and time.monotonic() > deadline:
                raise _TooSlow()
            out.write(chunk)
            h.update(chunk)
            done += len(chunk)
            if bar is not None:
                bar.update(task, completed=done)  # type: ignore[arg-type]
    return done, h.hexdigest()


def _download(url: str, dest: Path, *, sha256: str | None, progress: bool, timeout: float, hint: str | None,
              max_bytes: int | None = None, time_limit: float | None = None) -> None:
    """Download ``url`` into ``dest`` atomically, verifying size, time and checksum. Raises :class:`DownloadError`."""
    max_bytes = int(max_bytes if max_bytes is not None else _env_number("CLIPSTYLE_MAX_DOWNLOAD_BYTES", MAX_DOWNLOAD_BYTES))
    time_limit = float(time_limit if time_limit is not None else _env_number("CLIPSTYLE_DOWNLOAD_TIME_LIMIT",
                                                                             TOTAL_TIME_LIMIT))
    deadline = time.monotonic() + time_limit
    try:
        response = _open_url(url, timeout)
    except urllib.error.URLError as err:  # includes HTTPError
        if isinstance(err, urllib.error.HTTPError):
            err.close()  # an HTTPError holds the open response; release its socket
        raise DownloadError(url, _describe_url_error(url, err), hint) from err
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise DownloadError(url, _describe_url_error(url, err), hint) from err
    with response:
        length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
        total = int(length) if length and length.strip().isdigit() else None
        if length is not None and total is None:
            raise DownloadError(url, f"the server sent an invalid Content-Length {str(length)[:40]!r}", hint)
        if total is not None and total > max_bytes:
            raise DownloadError(url, f"the file is {total} bytes, over the {max_bytes}-byte download limit "
                                     f"(set CLIPSTYLE_MAX_DOWNLOAD_BYTES to raise it)", hint)
        try:
            with atomic_writer(dest, "wb") as out:
                label = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1]) or url
                try:
                    done, digest = _stream(response, out, total, label, progress, max_bytes, deadline)
                except _TooLarge:
                    limit = f"its Content-Length of {total}" if total is not None and total <= max_bytes else \
                        f"the {max_bytes}-byte download limit (set CLIPSTYLE_MAX_DOWNLOAD_BYTES to raise it)"
                    raise DownloadError(url, f"the server sent more than {limit}", hint) from None
                except _TooSlow:
                    raise DownloadError(url, f"the download took longer than {time_limit:.0f} s "
                                             f"(set CLIPSTYLE_DOWNLOAD_TIME_LIMIT to raise it)", hint) from None
                if total is not None and done != total:
                    raise DownloadError(url, f"incomplete download: got {done} of {total} bytes", hint)
                if done == 0:
                    raise DownloadError(url, "the server sent an empty file", hint)
                if sha256 is not None and digest != sha256.lower():
                    raise DownloadError(
                        url, f"checksum mismatch: expected sha256 {sha256.lower()}, got {digest}", hint
                    )
        except DownloadError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            if isinstance(err, OSError) and (err.filename is not None or err.errno in _LOCAL_ERRNOS):
                raise DownloadError(url, f"cannot write the cache file in {dest.parent}: {err.strerror}", hint) from err
            raise DownloadError(url, f"download interrupted: {_describe_url_error(url, err)}", hint) from err
    with contextlib.suppress(OSError):
        atomic_write_text(_sidecar(dest), f"{digest}  {dest.name}\n")


def _lock_is_held(lock_path: Path) -> bool:
    """True when another process holds ``lock_path`` (POSIX flock); False when free or absent."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: trust the age check of _file_lock
        return True
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _sweep_stale(folder: Path, own: str) -> None:
    """Remove what a killed download left in ``folder``: temp files and lock files no live process holds.

    Called while holding the lock of ``own`` (a file name in ``folder``), so temp files of ``own`` are orphans.
    """
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            name = p.name
            if name.endswith(".lock") and not _lock_is_held(p):
                with contextlib.suppress(OSError):
                    p.unlink()
            elif name.startswith(".") and name.endswith(".tmp"):
                owner = name[1:].rsplit(".", 2)[0]  # ".<dest>.<random>.tmp" -> <dest>
                owner = owner.removesuffix(".sha256")
                if owner == own or not _lock_is_held(folder / (owner + ".lock")):
                    with contextlib.suppress(OSError):
                        p.unlink()


def quarantine(path: str | os.PathLike[str]) -> Path:
    """Move a cached file that failed to load (and its ``.sha256``) to ``<cache>/quarantine/``.

    The next :func:`fetch` of its URL downloads it again. Returns the new path (or ``path`` unchanged
    if it could not be moved, which is then reported by the caller's message only).
    """
    path = Path(path)
    target_dir = path.parent.parent / "quarantine"
    target = target_dir / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except OSError:
        return path
    with contextlib.suppress(OSError):
        _sidecar(path).unlink()
    return target


def fetch(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    progress: bool = True,
    hint: str | None = DEFAULT_HINT,
    subdir: str = "downloads",
    timeout: float = 30.0,
    max_bytes: int | None = None,
    time_limit: float | None = None,
) -> Path:
    """Return a local file for ``source``, downloading it into the cache the first time.

    Args:
        source: a local path (``~`` expanded), or a ``file://``, ``http://`` or ``https://`` URL.
        cache_dir: cache folder; default ``$CLIPSTYLE_CACHE``, else the platform user cache dir
            (``platformdirs.user_cache_dir("clipstyle")``). Files go to ``<cache>/<subdir>/``.
        sha256: expected lower/upper-case hex SHA-256 of the file, or ``None`` to skip the check.
            For a cached file the stored ``.sha256`` sidecar (or the file, if there is none) is
            compared and a mismatching cache entry is downloaded again. Not checked for local paths.
        progress: show a rich progress bar (bytes, speed, ETA) on a terminal; on a non-terminal
            stderr a single "downloading …" line is printed instead.
        hint: the advice appended to every error message (LPIPS weights, for example, pass their
            own); ``None`` for none.
        subdir: sub-folder of the cache (e.g. ``"networks"``, ``"lpips"``).
        timeout: socket timeout in seconds for connecting and for each read.
        max_bytes: refuse a download larger than this (default :data:`MAX_DOWNLOAD_BYTES`, or
            ``$CLIPSTYLE_MAX_DOWNLOAD_BYTES``); checked against Content-Length first, then while streaming.
        time_limit: limit on the whole transfer in seconds (default :data:`TOTAL_TIME_LIMIT`, or
            ``$CLIPSTYLE_DOWNLOAD_TIME_LIMIT``), so a server dripping bytes cannot hold the process.

    Returns:
        The local path: ``Path(source)`` for a local file (not resolved, not copied), otherwise the
        cached file ``<cache>/<subdir>/<name>-<urlhash>.<ext>`` (see :func:`cached_path_for`).

    Raises:
        MissingFileError: (a :class:`DownloadError` and a :class:`FileNotFoundError`) a local path
            does not exist; the message is ``"no such file: X"``.
        DownloadError: a one-line message naming the URL and ending in ``hint`` when a
            ``file://`` target is missing, the URL
            scheme is unsupported, the network is unreachable (offline, DNS failure, refused,
            timeout), the server answers with an HTTP error (404 …), the transfer is cut short,
            the checksum differs, the file is over ``max_bytes`` or the transfer over ``time_limit``,
            more or fewer bytes than Content-Length arrive, or the cache folder cannot be written. No
            partial or temporary file is left behind; temp and lock files of a killed download are
            removed by the next fetch into the same folder.
    """
    src = os.fspath(source)
    if not is_url(src):
        path = Path(src).expanduser()
        if not path.exists():
            raise MissingFileError(src)
        return path
    scheme = urllib.parse.urlparse(src).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise DownloadError(src, f"unsupported URL scheme {scheme!r} (use http, https or file)", hint)

    dest = cached_path_for(src, cache_dir, subdir)
    expected = sha256.lower() if sha256 else None

    def cache_hit() -> bool:
        if not dest.is_file():
            return False
        if expected is None:
            return True
        recorded = _read_sidecar(dest)
        if recorded is None:
            recorded = sha256_file(dest)
            with contextlib.suppress(OSError):
                atomic_write_text(_sidecar(dest), f"{recorded}  {dest.name}\n")
        return recorded == expected

    if cache_hit():
        return dest
    if not reachable(src):  # offline: one line now, not minutes of timeouts
        raise DownloadError(src, offline_reason(src), hint)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(src, f"cannot create the cache folder {dest.parent}: {err.strerror or err}", hint) from err
    with _file_lock(dest.with_name(dest.name + ".lock"), src):
        if cache_hit():  # another process finished it while we waited
            return dest
        _sweep_stale(dest.parent, dest.name)
        _download(src, dest, sha256=expected, progress=progress, timeout=timeout, hint=hint,
                  max_bytes=max_bytes, time_limit=time_limit)
    return dest
