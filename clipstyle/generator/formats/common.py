"""What every checkpoint reader shares: the error type and the exact state-dict load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from clipstyle.errors import BadFileError


class CheckpointError(BadFileError):
    """A checkpoint that is readable but not a network we support (one-line message)."""


def load_state_exact(G: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``G`` requiring identical names and shapes; float32 copies.

    Raises:
        CheckpointError: a missing, unexpected or mis-shaped tensor (names the first few), or a
            floating-point tensor with NaN/inf values.
    """
    own = G.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(safe_text(k) for k in missing[:3])}")
        if extra:
            parts.append(f"unexpected {', '.join(safe_text(k) for k in extra[:3])}")
        if bad:
            parts.append(f"wrong shape {', '.join(safe_text(k) for k in bad[:3])}")
        raise CheckpointError("the checkpoint does not fit the generator it describes: " + "; ".join(parts))
    for k in sorted(state):
        v = state[k]
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"the checkpoint's tensor {safe_text(k)} holds NaN or infinite values; refused")
    G.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()})
    G.eval().requires_grad_(False)


def safe_text(value: object, limit: int = 80) -> str:
    """A file-derived value as one short printable line: control and non-printable characters escaped
    (``\\x1b`` …), rich markup brackets escaped, heap addresses (``at 0x…``) dropped, cut to ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # never leak a heap address
    out = []
    for ch in text[: limit + 1]:
        if ch == "[":
            out.append("\\[")
        elif ch.isprintable() and ch not in "\u2028\u2029":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    s = "".join(out)
    return s if len(text) <= limit else s[:limit] + "…"


def public_source(text: Any) -> str:
    """A source string fit for metadata: URLs and aliases unchanged, a file path reduced to its name."""
    s = str(text or "")
    if "://" in s and not s.startswith("file://"):
        return s
    s = s.removeprefix("file://")
    if "/" in s or "\\" in s or s.startswith("~"):
        return Path(s.replace("\\", "/")).name
    return s
