"""What every tab shares: the :class:`Context` (config, models, Stop flags, uploads, caps) and the one
wrapper that turns any exception of a request into the one line of :func:`clipstyle.ui.errors.describe`."""

from __future__ import annotations

import functools
import inspect
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from clipstyle.errors import UsageError
from clipstyle.ui.config import UIConfig
from clipstyle.ui.errors import describe
from clipstyle.ui.runner import Job, Models, StopFlags, status_html
from clipstyle.ui.sources import AllowedFiles, Sessions, image_size_ok, resolve

__all__ = ["Context", "HEAVY", "guarded", "int_or_none", "ui_error"]

#: Events that use the models share one Gradio concurrency group (one at a time, the rest queue).
HEAVY = {"concurrency_limit": 1, "concurrency_id": "model"}


def ui_error(exc: BaseException, hide: list[tuple[str, str]] | None = None) -> gr.Error:
    """The ``gr.Error`` a browser sees for ``exc``: the one line of :func:`clipstyle.ui.errors.describe`."""
    if isinstance(exc, gr.Error):
        return exc
    return gr.Error(describe(exc, hide or ()), print_exception=False)


def int_or_none(value: Any) -> int | None:
    """A seed field: empty or negative → None, else the integer."""
    return None if value is None or value == "" or float(value) < 0 else int(value)


@dataclass
class Context:
    """Everything a tab needs. ``models.ui`` points back here (for tabs mounted from other modules)."""

    config: UIConfig
    models: Models
    allowed: AllowedFiles
    sessions: Sessions
    stops: StopFlags = field(default_factory=StopFlags)

    def __post_init__(self) -> None:
        self.limits = self.config.limits
        self.outdir = Path(self.config.outdir)
        G = self.models.G
        self.groups = list(G.block_groups())
        self.row_labels = [f"{i} {self.groups[i]}" if i < len(self.groups) else str(i) for i in range(G.num_ws)]
        self.row_choices = [(label, i) for i, label in enumerate(self.row_labels)]  # shown "3 middle", sent 3
        self._seen: dict[tuple[str, str], tuple[str, Path]] = {}

    # ------------------------------------------------------------------ requests
    @staticmethod
    def session(request: Any) -> str:
        return str(getattr(request, "session_hash", None) or "default")

    def job(self, request: Any) -> Job:
        """A fresh stop condition for this session's request (Stop, or ``--max-seconds``)."""
        return self.stops.new(self.session(request), self.limits.max_seconds)

    def hide(self) -> list[tuple[str, str]]:
        """Server folders replaced in error lines: upload folders → ``upload:``, allowed folders → their name."""
        pairs = [(str(p), "upload:") for p in self.sessions.root.iterdir() if p.is_dir()] \
            if self.sessions.root.is_dir() else []
        for folder in self.config.allow_dirs:
            root = Path(folder).expanduser().resolve()
            pairs.append((str(root), root.name))
        return pairs

    def cap(self, value: Any, limit: int, option: str, what: str) -> int:
        """``value`` as an int ≥ 1 and ≤ ``limit``. UsageError: one line naming the operator's option."""
        n = int(value)
        if n < 1:
            raise UsageError(f"{what} must be at least 1, got {n}")
        if n > limit:
            raise UsageError(f"{what} {n} is over this server's limit of {limit} ({option})")
        return n

    # ------------------------------------------------------------------ files
    def take_upload(self, request: Any, upload: Any, suffixes: tuple[str, ...]) -> tuple[str, Path]:
        """Copy a Gradio upload into the session's folder once (the same upload again is the same copy)."""
        session = self.session(request)
        path = str(upload) if isinstance(upload, (str, Path)) else str(getattr(upload, "name", upload))
        key = (session, path)
        if key not in self._seen or not self._seen[key][1].is_file():
            self._seen[key] = self.sessions.take(session, path, suffixes)
        return self._seen[key]

    def picture(self, request: Any, upload: Any, choice: str | None, what: str) -> Path:
        """The picture a request names: its upload, else a listed allowed picture; size checked from the
        header (``--max-resolution``). UsageError: neither, or a name that is not listed."""
        from clipstyle.ui.sources import IMAGE_SUFFIXES

        if upload:
            path = self.take_upload(request, upload, IMAGE_SUFFIXES)[1]
        elif choice:
            path = Path(resolve(choice, self.allowed.images, self.sessions.uploads(self.session(request)),
                                what=what))
        else:
            raise UsageError(f"upload a {what} first (or pick one from the list)")
        image_size_ok(path, self.limits.max_resolution)
        return path

    def latent_names(self, request: Any) -> dict[str, str]:
        """Latent files this session may name: the allowed ones and its uploads (also by bare file name)."""
        uploads = {n: p for n, p in self.sessions.uploads(self.session(request)).items()
                   if Path(p).suffix.lower() in (".npz", ".npy", ".pt", ".pth")}
        bare = {n.removeprefix("upload:"): p for n, p in uploads.items()}
        return {**self.allowed.latents, **bare, **uploads}

    def publish(self, run: Any, request: Any, names: tuple[str, ...] = ("result.png", "progress.gif",
                                                                        "latents.npz")) -> tuple[Path, list[str]]:
        """Save ``run`` under ``--outdir`` (the operator's record) and copy ``names`` into the session's folder
        for the browser to download. Returns (run folder, the copies' paths)."""
        run_dir = run.save(self.outdir)
        out = self.sessions.folder(self.session(request)) / "runs" / run_dir.name
        out.mkdir(parents=True, exist_ok=True)
        files = []
        for name in names:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, out / name)
                files.append(str(out / name))
        return run_dir, files

    def error(self, exc: BaseException) -> gr.Error:
        return ui_error(exc, self.hide())

    def status(self, done: int, total: int, text: str, key: str) -> str:
        return status_html(done, total, text, key)


def guarded(ctx: Context, fn: Callable) -> Callable:
    """``fn`` (a function or generator function of a Gradio event) with every exception turned into a
    ``gr.Error`` of one line; a bug is logged with its traceback and shown as "this is a bug in clipstyle"."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes one line
                raise ctx.error(exc) from None
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ctx.error(exc) from None
    return call
