"""The ONE place the web UI turns an exception into the line a browser sees.

Every failure shows as the line :func:`clipstyle.errors.error_line` gives the CLI and a batch job for the same
exception (:func:`clipstyle.errors.describe` classifies it by type); a bug's line says "this is a bug in
clipstyle" and the server log gets its traceback. The line never carries file bytes or server folders: it is
one line of
printable text, byte-string literals are elided, the UI's own folders are replaced by placeholders, and it
is cut at :data:`MAX_CHARS` characters.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable

__all__ = ["MAX_CHARS", "describe", "is_bug"]

MAX_CHARS = 300
_BYTES = re.compile(r"""\bb(['"]).*?(?<!\\)\1""")
log = logging.getLogger("clipstyle.ui")


def is_bug(exc: BaseException) -> bool:
    """True when ``exc`` is not an error a user can cause (:func:`clipstyle.errors.describe` knows no line)."""
    from clipstyle.errors import describe as shared

    return shared(exc) is None


def describe(exc: BaseException, hide: Iterable[tuple[str, str]] = ()) -> str:
    """The one line a browser sees for ``exc``.

    Args:
        exc: the exception a request raised.
        hide: ``(server folder, placeholder)`` pairs replaced in the text (the session's upload folder
            becomes ``upload:``, so a message names the uploaded file, not where the server keeps it).

    Returns:
        :func:`clipstyle.errors.error_line` (for a bug: "internal error (this is a bug in clipstyle, please
        report it): TypeName: …", its traceback written to the ``clipstyle.ui`` logger, never to the browser),
        made safe: one printable line of at most :data:`MAX_CHARS` characters, byte literals elided, the UI's
        folders replaced, ``<``/``>``/``&`` escaped.
    """
    from clipstyle.errors import error_line

    if is_bug(exc):
        log.error("bug in a UI request", exc_info=(type(exc), exc, exc.__traceback__))
    text = error_line(exc)  # the line the CLI and a batch job show for the same exception
    for folder, placeholder in hide:
        if folder:
            text = text.replace(folder.rstrip("/") + "/", placeholder).replace(folder, placeholder)
    text = _BYTES.sub("b'…'", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split()) or type(exc).__name__
    text = text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1] + "…"
    return html.escape(text, quote=False)  # Gradio renders the message as HTML
