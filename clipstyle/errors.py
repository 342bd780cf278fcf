"""The error types every layer may raise, and how the command line turns them into exit codes.

This module imports nothing of ours and nothing heavy, so any package (io, latents, generator,
pipelines, the UI) can import it without importing the CLI, and the CLI can classify an exception
while another import (torch's, say) is half done — the cause of the old Ctrl-C segfaults was an
``except`` clause that imported modules to find the classes to match.

**One hierarchy.** Every error a user can cause derives from :class:`ClipstyleError` through one of
:class:`UsageError` (exit 2), :class:`BadFileError` or :class:`UserRuntimeError` (exit 1); the concrete
classes live where they are raised (``LatentFileError`` in ``latents.latent``, ``DownloadError`` in
``io.cache`` …) and are raised by type. :func:`describe` is the one classifier: the CLI
(``cli.common.handle_errors``), the UI (``ui.app.ui_error``) and a batch job (``batch.execute.user_error``)
all show its line, so the same mistake reads the same everywhere; anything it does not know is a bug
(:func:`bug_line`; the CLI adds the traceback).

Exit codes (documented in docs/newcomer.md):

* ``0`` success;
* ``1`` a runtime problem or a bad input file (:class:`UserRuntimeError`, :class:`BadFileError`,
  offline, a download, a corrupt checkpoint, a non-finite loss) — and internal errors (bugs), which
  additionally print their traceback;
* ``2`` a mistake in the command line: :class:`UsageError` and its subclasses (and a missing file the user
  named) — never any other exception;
* ``130`` interrupted (Ctrl-C); the best result so far is kept where the command has one.
"""

from __future__ import annotations

import errno
import re
import signal
from typing import Optional

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "BadFileError",
    "ClipstyleError",
    "NonFiniteLossError",
    "NonFiniteLossWarning",
    "UsageError",
    "UserRuntimeError",
    "bug_line",
    "describe",
    "error_line",
    "exit_code_for",
    "interrupt_requested",
]

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ClipstyleError(Exception):
    """Base of the errors meant for a user: ``str()`` is one line; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_RUNTIME


class UsageError(ClipstyleError, ValueError):
    """A mistake in the command line or in the arguments of a public function (exit code 2)."""

    exit_code = EXIT_USAGE


class BadFileError(ClipstyleError, ValueError):
    """An input file that exists but cannot be used as what it was given as (exit code 1).

    Subclass this for file-format errors (checkpoints, latent files, images) in new code.
    """

    exit_code = EXIT_RUNTIME


class UserRuntimeError(ClipstyleError, RuntimeError):
    """The command line was fine but the work cannot be done: offline, a failed render… (exit code 1)."""

    exit_code = EXIT_RUNTIME


class NonFiniteLossError(UserRuntimeError, FloatingPointError):
    """The optimization produced NaN or infinity; ``str()`` names the cause (exit code 1)."""


class NonFiniteLossWarning(RuntimeWarning):
    """Issued by the optimization loop when it stops on a non-finite value and returns the best so far.

    The CLI turns it into a :class:`NonFiniteLossError` line (exit 1) after the command saved its result.
    """


# Built-in exceptions that mean the user's input: a missing file or folder named by the user (exit 2).
_BUILTIN_USAGE: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError, NotADirectoryError)

#: What every front end says about an exhausted memory (the CLI, the UI and a batch job alike).
OUT_OF_MEMORY = "out of memory; try fewer --cutouts, a smaller --batch (--batch-size in batch) or a GPU"
#: The start of the line for an internal error (a bug): never a user's mistake.
BUG = "internal error (this is a bug in clipstyle, please report it)"

# Our temporary files (io.files: ".NAME.<8 random chars>.tmp[.suffix]") are never shown to a user.
_TEMP_NAME = re.compile(r"\.([^/\s'\"]+?)\.[A-Za-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9]+)?")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(message: object) -> str:
    """``message`` as one clean line: ANSI codes and our temp-file names removed, whitespace collapsed, and
    every other non-printable character escaped (``\\x07``), so no terminal escape sequence gets through."""
    text = _ANSI.sub("", str(message))
    text = _TEMP_NAME.sub(lambda m: m.group(1), text)
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _os_message(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {name}" if name else str(exc.strerror)
    if exc.errno == errno.ENOSPC:
        return f"no space left on the disk while writing {name}" if name else "no space left on the disk"
    return f"{exc.strerror}: {name}" if name else str(exc.strerror)


def describe(exc: BaseException) -> Optional[tuple[int, str]]:
    """What the CLI, the UI and a batch job all say about ``exc``: ``(exit code, one line)`` for an error a user
    can cause, ``None`` for anything else — an internal error (a bug), shown with :func:`bug_line`.

    Classified by type only, never by class name or message text: :class:`ClipstyleError` (its ``exit_code``
    and ``str()``); an ``OSError`` of the system (a missing file the user named → 2, a full disk, a denied
    permission → 1); ``MemoryError`` and ``FloatingPointError`` → 1. The line has no control characters.
    Never imports a module (safe inside an ``except`` clause while an import is half done).
    """
    if isinstance(exc, ClipstyleError):
        return exc.exit_code, one_line(str(exc) or type(exc).__name__)
    if isinstance(exc, MemoryError):
        return EXIT_RUNTIME, OUT_OF_MEMORY
    if isinstance(exc, FloatingPointError):
        return EXIT_RUNTIME, one_line(str(exc) or "a computation overflowed (non-finite value)")
    if isinstance(exc, _BUILTIN_USAGE) and getattr(exc, "filename", None) is not None:
        return EXIT_USAGE, one_line(_os_message(exc))  # type: ignore[arg-type]
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:  # disk full, permission denied…
        return EXIT_RUNTIME, one_line(_os_message(exc))
    return None


def bug_line(exc: BaseException) -> str:
    """The one line for an internal error (a bug): ``internal error (this is a bug in clipstyle, please report
    it): TypeError: …``. The CLI prints the traceback below it; the UI shows the line only."""
    return f"{BUG}: {type(exc).__name__}: {one_line(exc)}"


def error_line(exc: BaseException) -> str:
    """The one line a front end shows for ``exc``: :func:`describe`'s, or :func:`bug_line` for a bug."""
    described = describe(exc)
    return described[1] if described is not None else bug_line(exc)


def exit_code_for(exc: BaseException) -> Optional[int]:
    """The exit code of a user-facing error, or ``None`` for anything else (a bug); see :func:`describe`."""
    described = describe(exc)
    return described[0] if described is not None else None


def interrupt_requested() -> bool:
    """True once Ctrl-C was pressed inside a command run by the CLI (see ``cli.common.InterruptWatch``).

    Long loops check it before each step, so a command with several phases (projection, then edit) stops
    as a whole instead of running the next phase. Outside the CLI it is always False.
    """
    handler = signal.getsignal(signal.SIGINT)
    return bool(getattr(handler, "interrupted", False))
