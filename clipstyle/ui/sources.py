"""Where the web UI's files may come from: the operator's allowed folders and this session's uploads.

A browser never names a server path. It picks a *name* from a list the server built (the files of
``--allow-dir`` folders, listed once at start) or uploads a file, which is copied (size-capped) into a
folder of its own session; both resolve to a path here by dictionary lookup, so anything else a browser
sends — ``/etc/hostname``, ``../x``, a URL — is simply not a name and is refused with one line.
Reading the files is left to the budgeted readers (:mod:`clipstyle.io.images`, the latent readers).

Nothing here imports Gradio or torch.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from clipstyle.errors import BadFileError, UsageError

__all__ = ["IMAGE_SUFFIXES", "LATENT_SUFFIXES", "AllowedFiles", "Sessions", "UploadError", "image_size_ok", "resolve"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LATENT_SUFFIXES = (".npz", ".npy", ".pt", ".pth")
MAX_LISTED = 2000  # files listed per kind from all allowed folders
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(BadFileError):
    """An upload the UI refuses (too large, the wrong kind, over the session's budget): one line."""


@dataclass(frozen=True)
class AllowedFiles:
    """The files of the operator's ``--allow-dir`` folders, by kind: display name → absolute path.

    Only regular files whose real location is inside an allowed folder (symlinks leading out are left
    out), at most two folder levels deep, at most :data:`MAX_LISTED` per kind.
    """

    images: dict[str, str]
    latents: dict[str, str]

    @classmethod
    def scan(cls, folders: tuple[str, ...]) -> AllowedFiles:
        """List ``folders`` now. Raises UsageError: a folder that does not exist."""
        images: dict[str, str] = {}
        latents: dict[str, str] = {}
        for folder in folders:
            root = Path(folder).expanduser()
            if not root.is_dir():
                raise UsageError(f"--allow-dir {folder}: not a folder")
            root = root.resolve()
            for path in sorted(_walk(root, depth=2)):
                real = path.resolve()
                if not real.is_relative_to(root) or not real.is_file():
                    continue
                name = f"{root.name}/{path.relative_to(root).as_posix()}"
                suffix = path.suffix.lower()
                table = images if suffix in IMAGE_SUFFIXES else latents if suffix in LATENT_SUFFIXES else None
                if table is not None and len(table) < MAX_LISTED:
                    table.setdefault(name, str(real))
        return cls(images, latents)


def _walk(root: Path, depth: int):
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink() and depth > 1:
            yield from _walk(entry, depth - 1)
        elif entry.is_file():
            yield entry


def image_size_ok(path: str | Path, max_side: int) -> tuple[int, int]:
    """``(width, height)`` of a picture from its header (nothing decoded).

    Raises:
        UploadError: not a picture PIL recognises, or a side over ``max_side`` pixels (``--max-resolution``).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:  # reads the header only
            width, height = img.size
    except Image.DecompressionBombError:
        raise UploadError(f"{Path(path).name}: the picture is far over the size limit ({max_side} px a side)") \
            from None
    except (OSError, ValueError, SyntaxError):
        raise UploadError(f"{Path(path).name}: not a picture this UI can read (PNG, JPEG, WebP, BMP)") from None
    if max(width, height) > max_side:
        raise UploadError(f"{Path(path).name}: {width}×{height} pixels is over this server's limit of "
                          f"{max_side} pixels a side (--max-resolution)")
    return width, height


class Sessions:
    """One private upload folder per browser session, with size budgets; removed when the session ends.

    Args:
        root: the parent folder (created 0700; default a fresh temporary folder).
        file_bytes: largest single upload. session_bytes: all uploads of one session together.
    """

    def __init__(self, file_bytes: int, session_bytes: int, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="clipstyle-ui-"))
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.file_bytes, self.session_bytes = int(file_bytes), int(session_bytes)
        self._lock = threading.Lock()
        self._names: dict[str, dict[str, str]] = {}  # session → upload name → path

    def folder(self, session: str) -> Path:
        """The session's own folder (created on first use)."""
        key = _SAFE.sub("_", str(session))[:64] or "default"
        path = self.root / key
        path.mkdir(exist_ok=True, mode=0o700)
        return path

    def take(self, session: str, upload: str | Path, suffixes: tuple[str, ...]) -> tuple[str, Path]:
        """Copy an uploaded file (Gradio's temporary copy) into the session's folder.

        Returns:
            ``(name, path)``: the name it is listed under (``upload:<file name>``) and its copy.

        Raises:
            UploadError: a suffix not in ``suffixes``, a file over the per-file limit, or the session's
            uploads over their budget.
        """
        src = Path(upload)
        suffix = src.suffix.lower()
        if suffix not in suffixes:
            raise UploadError(f"{src.name}: expected a {' / '.join(suffixes)} file")
        size = src.stat().st_size
        if size > self.file_bytes:
            raise UploadError(f"{src.name}: {size / 2**20:.1f} MiB is over this server's upload limit of "
                              f"{self.file_bytes / 2**20:.0f} MiB (--max-upload-mb)")
        folder = self.folder(session)
        used = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        if used + size > self.session_bytes:
            raise UploadError(f"{src.name}: this session's uploads would exceed {self.session_bytes / 2**20:.0f} "
                              f"MiB (--max-session-mb); reload the page to start a new session")
        stem = _SAFE.sub("_", src.stem)[:60].strip("._") or "upload"
        dest = folder / f"{stem}{suffix}"
        k = 1
        while dest.exists():
            k += 1
            dest = folder / f"{stem}-{k}{suffix}"
        with open(src, "rb") as fin, open(dest, "xb") as fout:
            copied = _copy_limited(fin, fout, self.file_bytes)
        if copied is False:
            dest.unlink(missing_ok=True)
            raise UploadError(f"{src.name}: over this server's upload limit (--max-upload-mb)")
        name = f"upload:{dest.name}"
        with self._lock:
            self._names.setdefault(str(session), {})[name] = str(dest)
        return name, dest

    def uploads(self, session: str) -> dict[str, str]:
        """The session's uploads: name → path."""
        with self._lock:
            return dict(self._names.get(str(session), {}))

    def close(self, session: str) -> None:
        """Forget the session and remove its folder."""
        with self._lock:
            self._names.pop(str(session), None)
        key = _SAFE.sub("_", str(session))[:64] or "default"
        shutil.rmtree(self.root / key, ignore_errors=True)

    def remove_all(self) -> None:
        """Remove every session's folder (the server is closing)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _copy_limited(fin, fout, limit: int) -> bool:
    """Copy at most ``limit`` bytes; False when the source had more (a file growing while copied)."""
    total = 0
    while chunk := fin.read(1 << 20):
        total += len(chunk)
        if total > limit:
            return False
        fout.write(chunk)
    return True


def resolve(choice: str | None, *tables: dict[str, str], what: str) -> str:
    """The path of a listed ``choice`` (an allowed file's name or an upload's), by lookup only.

    Raises:
        UsageError: ``choice`` is not one of the listed names (a typed path or URL never is).
    """
    name = str(choice or "").strip()
    for table in tables:
        if name in table:
            return table[name]
    shown = name if len(name) <= 60 else name[:59] + "…"
    raise UsageError(f"{what} {shown!r} is not one this server offers: pick one from the list or upload a file")
