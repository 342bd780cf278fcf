"""The error of the guidance package (CLIP, prompts, cutouts, losses), in a module of its own so that the CLIP
wrapper and the checks of CLIP files can both raise it without importing each other."""

from __future__ import annotations

from clipstyle.errors import UsageError

__all__ = ["GuidanceError"]


class GuidanceError(UsageError):
    """A user-facing guidance error; its message is one line and says what to do."""
