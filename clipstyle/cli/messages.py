"""The two lines a command prints about trouble: ``error: …`` (then it exits) and ``warning: …``.

Both go to stderr as one line with control characters escaped (:func:`clipstyle.errors.one_line`). This
module sits below :mod:`clipstyle.cli.common` and :mod:`clipstyle.cli.checks`, which both print through it.
"""

from __future__ import annotations

import sys

import typer

from clipstyle.errors import EXIT_RUNTIME, one_line

__all__ = ["fail", "warn"]


def fail(message: str, code: int = EXIT_RUNTIME) -> typer.Exit:
    """Print ``error: message`` (one line, control characters escaped) to stderr; return the ``typer.Exit``."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` (one line) to stderr: something the user should know but that is not fatal."""
    print(f"warning: {one_line(message)}", file=sys.stderr)
