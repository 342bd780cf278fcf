"""Prompt syntax: weighted text and image prompts separated by ``|``.

Grammar (one line, whitespace around separators is ignored)::

    spec    := segment ( "|" segment )*
    segment := body [ ":" weight ]
    body    := "@" PATH          (an image prompt: a picture file to match)
             | TEXT              (a text prompt)
    weight  := a finite decimal number, e.g. 1, 0.5, -1, +2, 1e-1 (default 1)

Examples: ``"a castle:1 | fog:0.5 | blurry:-1"``, ``"@photo.png:0.5 | oil painting"``.

A negative weight pushes the image *away* from that prompt. Only a *trailing* ``:number`` is a
weight: ``"style: baroque"`` is one text prompt with weight 1, because ``" baroque"`` is not a
number. To keep a trailing number as text (``"aspect 16:9"`` would read as weight 9), append an
explicit weight: ``"aspect 16:9:1"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clipstyle.guidance.clip import GuidanceError

__all__ = ["WeightedPrompt", "parse_prompts"]


@dataclass(frozen=True)
class WeightedPrompt:
    """One parsed prompt: exactly one of ``text`` / ``image`` is set.

    Attributes:
        text: prompt text (stripped), or None for an image prompt.
        image: path of the image file (the part after ``@``, stripped), or None for a text prompt.
        weight: finite float; positive pulls towards the prompt, negative pushes away, 0 ignores it.
    """

    text: str | None
    image: str | None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise GuidanceError("a prompt needs exactly one of text or image")
        if not math.isfinite(self.weight):
            raise GuidanceError(f"prompt weight must be a finite number, got {self.weight!r}")

    @property
    def is_image(self) -> bool:
        """True for an image prompt (``@file``)."""
        return self.image is not None


def _split_weight(segment: str) -> tuple[str, float]:
    """Split ``"body:weight"`` into (body, weight); no trailing number → (segment, 1.0)."""
    head, sep, tail = segment.rpartition(":")
    if not sep:
        return segment, 1.0
    try:
        weight = float(tail.strip())
    except ValueError:
        return segment, 1.0  # "style: baroque" — the colon belongs to the text
    if not math.isfinite(weight):
        raise GuidanceError(f"prompt weight must be a finite number, got {tail.strip()!r} in {segment!r}")
    return head, weight


def parse_prompts(spec: str) -> list[WeightedPrompt]:
    """Parse a prompt spec such as ``"a:1 | b:0.5 | c:-1 | @photo.png:0.5"``.

    Args:
        spec: the prompt string (see the module docstring for the grammar). Empty segments
            (``"a || b"``) are skipped.

    Returns:
        The prompts in the order written, zero-weight ones included (losses ignore them).

    Raises:
        GuidanceError: the spec is empty/blank, a segment has a weight but no text (``":0.5"``),
            an ``@`` has no path, a weight is ``inf``/``nan``, or every weight is zero.
    """
    if spec is None or not spec.strip():
        raise GuidanceError("empty prompt: give some text, e.g. 'a photo of a cat', or an image prompt '@file.png'")
    prompts: list[WeightedPrompt] = []
    for raw in spec.split("|"):
        segment = raw.strip()
        if not segment:
            continue
        body, weight = _split_weight(segment)
        body = body.strip()
        if body.startswith("@"):
            path = body[1:].strip()
            if not path:
                raise GuidanceError(f"image prompt {segment!r} has no file name after '@'")
            prompts.append(WeightedPrompt(text=None, image=path, weight=weight))
        else:
            if not body:
                raise GuidanceError(f"prompt segment {segment!r} has a weight but no text")
            prompts.append(WeightedPrompt(text=body, image=None, weight=weight))
    if not prompts:
        raise GuidanceError(f"empty prompt {spec!r}: every '|'-separated part is blank")
    if all(p.weight == 0 for p in prompts):
        raise GuidanceError(f"all prompt weights are zero in {spec!r}; give at least one non-zero weight")
    return prompts
