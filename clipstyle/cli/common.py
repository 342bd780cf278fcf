"""What every command shares: the one guard around a command (checks first, errors as one line, Ctrl-C),
devices, options.

:func:`handle_errors` is applied to every registered command (``clipstyle.cli.click_app`` wraps any
command that forgot), so a new command gets every class of behaviour below without code of its own:

* **checks before work** — :func:`clipstyle.cli.checks.check_arguments` validates the arguments by their
  *parameter names* (``outdir``, ``out``, input files, ``--prompts``, ``--mp4`` …) before the body runs;
* **errors by type** — :func:`clipstyle.errors.describe` gives the exit code and the one line (the same
  line the UI and a batch job show): :class:`~clipstyle.errors.UsageError` is the only exit-2 path; other
  user-facing errors exit 1; anything else is an internal error: one ``internal error`` line, the
  traceback, exit 1;
* **interrupts** — Ctrl-C, SIGTERM and SIGHUP stop the command as a whole (later phases see
  :func:`clipstyle.errors.interrupt_requested`), the command keeps the best result, exit 130 / 143 / 129;
* **non-finite losses** — the loop's :class:`~clipstyle.errors.NonFiniteLossWarning` becomes an exit-1
  line after the command saved the best result.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
import warnings
from typing import Any, Callable, TypeVar

import typer

from clipstyle.cli.messages import fail, warn
from clipstyle.errors import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_USAGE,
    BadFileError,
    NonFiniteLossWarning,
    UsageError,
    UserRuntimeError,
    bug_line,
    describe,
    one_line,
)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["EXIT_INTERRUPTED", "EXIT_RUNTIME", "EXIT_USAGE", "BadFileError", "InterruptWatch", "UsageError",
           "UserRuntimeError", "debug_enabled", "fail", "handle_errors", "one_line", "resolve_device",
           "warn"]


def debug_enabled() -> bool:
    """``clipstyle --debug …`` (or ``CLIPSTYLE_DEBUG=1``): show the traceback of every error."""
    return os.environ.get("CLIPSTYLE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


#: The signals that stop a command like Ctrl-C: SIGINT (Ctrl-C), SIGTERM (``kill``, ``timeout``, schedulers,
#: container stops) and SIGHUP (the terminal closed). Each exits with 128 + its number (130, 143, 129).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class InterruptWatch:
    """Handler of SIGINT, SIGTERM and SIGHUP for the duration of one command: records the signal, then raises
    KeyboardInterrupt, so every stop request takes the Ctrl-C path (the loop keeps its best result, which the
    command writes) and the command exits with :attr:`exit_code` (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).

    ``signal.getsignal(SIGINT).interrupted`` is how :func:`clipstyle.errors.interrupt_requested` (called by the
    optimization loop before each step) learns that the command as a whole must stop: the same handler object
    serves all three signals. The previous handlers are restored on exit. Outside the main thread (a UI worker)
    it does nothing.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._installed = False

    @property
    def exit_code(self) -> int:
        """128 + the first signal received (130 when none or SIGINT)."""
        return 128 + int(self.signum) if self.signum is not None else EXIT_INTERRUPTED

    @property
    def message(self) -> str:
        """The stderr line: ``interrupted`` for Ctrl-C, ``interrupted (SIGTERM)`` / ``(SIGHUP)`` otherwise."""
        if self.signum is None or self.signum == signal.SIGINT:
            return "interrupted"
        return f"interrupted ({signal.Signals(self.signum).name})"

    def __call__(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if self.signum is None:
            self.signum = int(signum)
        raise KeyboardInterrupt

    def __enter__(self) -> "InterruptWatch":
        try:
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self)
            self._installed = True
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)


class _NoHalfMadeFolders:
    """Remembers ``--outdir`` before the command; after a failure removes the *empty* folders it left there
    (a run folder claimed before an error, the outdir itself when the command created it). Never touches a
    folder that holds anything."""

    def __init__(self, outdir: Any) -> None:
        from pathlib import Path

        self.outdir = Path(outdir) if outdir is not None else None
        self.existed = bool(self.outdir is not None and self.outdir.is_dir())
        self.before = {p.name for p in self.outdir.iterdir()} if self.existed else set()

    def clean(self) -> None:
        if self.outdir is None or not self.outdir.is_dir():
            return
        try:
            for child in self.outdir.iterdir():
                if child.name not in self.before and child.is_dir() and not any(child.iterdir()):
                    child.rmdir()
            if not self.existed and not any(self.outdir.iterdir()):
                self.outdir.rmdir()
        except OSError:
            pass


def _guarded(callback: Callable[..., Any]) -> bool:
    seen = callback
    for _ in range(8):
        if getattr(seen, "_clipstyle_guarded", False):
            return True
        seen = getattr(seen, "__wrapped__", None)
        if seen is None:
            return False
    return False


def handle_errors(func: F) -> F:
    """The one guard of every command: checks, errors by type, Ctrl-C → 130, non-finite losses (module doc)."""
    if _guarded(func):
        return func

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonfinite: list[str] = []
        watch = InterruptWatch()
        folders = _NoHalfMadeFolders(kwargs.get("outdir"))
        try:
            with watch, warnings.catch_warnings():
                warnings.simplefilter("always", NonFiniteLossWarning)
                show = warnings.showwarning

                def capture(message, category, *rest, **kw):  # noqa: ANN001
                    if issubclass(category, NonFiniteLossWarning):
                        nonfinite.append(str(message))
                    else:
                        show(message, category, *rest, **kw)

                warnings.showwarning = capture
                from clipstyle.cli.checks import check_arguments

                check_arguments(func, kwargs)
                from clipstyle.io.files import exclusive_outputs

                out = kwargs.get("out")
                claim = [out] if out is not None and not kwargs.get("overwrite") else []
                with exclusive_outputs(claim):  # of two processes writing one new --out, one wins
                    result = func(*args, **kwargs)
        except typer.Exit as exc:
            if exc.exit_code:
                folders.clean()
            raise
        except KeyboardInterrupt:  # the line "interrupted" is printed once, by clipstyle.cli.main, from the code
            folders.clean()
            raise typer.Exit(watch.exit_code) from None
        except Exception as exc:  # noqa: BLE001 - classified by type below, never by a guess
            folders.clean()
            described = describe(exc)
            if described is None:  # a bug: its line, then its traceback, exit 1 (never 2)
                print(bug_line(exc), file=sys.stderr)
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
                raise typer.Exit(EXIT_RUNTIME) from None
            if debug_enabled():
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            raise fail(described[1], described[0]) from None
        if nonfinite:
            raise fail(nonfinite[0], EXIT_RUNTIME)
        if watch.interrupted:
            raise typer.Exit(watch.exit_code)
        return result

    wrapper._clipstyle_guarded = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def resolve_device(device: str) -> str:
    """``auto`` → CUDA, else MPS, else CPU; an absent device → DeviceError (a ValueError, exit 2)."""
    from clipstyle.optimize import devices

    return devices.resolve_device(device)

