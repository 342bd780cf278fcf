"""Styleblock exploration: what one row of ``ws`` does when it is scaled.

A *styleblock* is one row ``ws[:, i]`` of the W+ latent ``[N, num_ws, w_dim]``; it drives the
styles (AdaIN / modulation) of one or two synthesis layers (Karras et al. 2019, §2–3: coarse rows
control pose and shape, middle rows features, fine rows colour and texture). Scaling a single row
while keeping every other row bit-identical shows what that row controls.

Scaling: ``row ← center + f·(row − center)`` with ``center`` = 0 (plain multiplication, the
default) or ``w_avg`` (per-row truncation towards the average latent; ``f`` = 1 is the input, 0
the average).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from clipstyle.errors import UsageError

__all__ = ["parse_range", "factors", "scale_row", "scale_rows", "render_ws", "styleblock_frames", "mix_styles"]


def parse_range(spec: str, what: str = "range") -> tuple[float, float]:
    """``"0:1"`` → ``(0.0, 1.0)``; ``"-2:2"`` → ``(-2.0, 2.0)``; a single number ``"3"`` → ``(3.0, 3.0)``.

    Raises:
        ValueError: not ``LO:HI`` with finite numbers (``LO > HI`` is allowed and runs backwards).
    """
    text = str(spec).strip()
    parts = text.split(":")
    try:
        if len(parts) == 1:
            lo = hi = float(parts[0])
        elif len(parts) == 2:
            lo, hi = float(parts[0]), float(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise UsageError(f"bad {what} {spec!r}: use LO:HI, e.g. 0:1 or -2:2") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UsageError(f"bad {what} {spec!r}: the ends must be finite numbers")
    return lo, hi


def factors(lo: float, hi: float, frames: int) -> list[float]:
    """``frames`` evenly spaced values from ``lo`` to ``hi`` inclusive (one frame → ``[lo]``).

    Raises:
        ValueError: ``frames < 1``.
    """
    if frames < 1:
        raise UsageError(f"--frames must be >= 1, got {frames}")
    if frames == 1:
        return [float(lo)]
    return [float(v) for v in np.linspace(lo, hi, frames)]


def scale_row(ws: torch.Tensor, row: int, values: Sequence[float], center: torch.Tensor | None = None) -> torch.Tensor:
    """Copies of one latent with row ``row`` scaled by each factor.

    Args:
        ws: ``[1, num_ws, w_dim]`` or ``[num_ws, w_dim]`` float32.
        row: styleblock index in ``[0, num_ws)``.
        values: F factors ``f``.
        center: ``[w_dim]`` centre of the scaling (``None`` = 0).

    Returns:
        float32 ``[F, num_ws, w_dim]``: item k equals ``ws`` except row ``row`` =
        ``center + f_k·(ws[row] − center)``; every other row is bit-identical to the input.

    Raises:
        ValueError: bad shape or row out of range.
    """
    if ws.ndim == 2:
        ws = ws[None]
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise ValueError(f"ws must be [1, num_ws, w_dim], got {list(ws.shape)}")
    if not 0 <= row < ws.shape[1]:
        raise UsageError(f"styleblock {row} is out of range 0-{ws.shape[1] - 1}")
    f = torch.tensor([float(v) for v in values], dtype=ws.dtype, device=ws.device)
    out = ws.repeat(len(values), 1, 1)
    base = ws[0, row]
    if center is None:
        out[:, row] = f[:, None] * base[None]
    else:
        c = center.to(ws)
        out[:, row] = c[None] + f[:, None] * (base - c)[None]
    return out


def scale_rows(ws: torch.Tensor, factors_: Sequence[float], center: torch.Tensor | None = None) -> torch.Tensor:
    """Every row scaled by its own factor: row ``i`` ← ``center + f_i·(ws[:, i] − center)``.

    Args:
        ws: ``[N, num_ws, w_dim]`` float32. factors_: ``num_ws`` factors (1 leaves a row bit-identical).
        center: ``[w_dim]`` centre (``None`` = 0; ``w_avg`` = per-row truncation).

    Returns:
        float32 ``[N, num_ws, w_dim]``.

    Raises:
        ValueError: not one factor per row, or a bad shape.
    """
    if ws.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got {list(ws.shape)}")
    if len(factors_) != ws.shape[1]:
        raise ValueError(f"need one factor per styleblock ({ws.shape[1]}), got {len(factors_)}")
    out = ws.to(torch.float32).clone()
    c = torch.zeros(ws.shape[2], dtype=torch.float32, device=ws.device) if center is None else center.to(out)
    for i, f in enumerate(factors_):
        if float(f) != 1.0:
            out[:, i] = c + float(f) * (out[:, i] - c)
    return out


@torch.no_grad()
def render_ws(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = "const", batch_size: int = 8) -> np.ndarray:
    """Synthesize ``ws`` ``[F, num_ws, w_dim]`` in chunks → uint8 ``[F, H, W, C]`` (see render.to_uint8)."""
    from clipstyle.render.files import to_uint8

    device = G.w_avg.device
    chunks = [to_uint8(G.synthesis(ws[i : i + batch_size].to(device), noise_mode=noise_mode))
              for i in range(0, ws.shape[0], max(1, batch_size))]
    return np.concatenate(chunks)


def styleblock_frames(G: torch.nn.Module, ws: torch.Tensor, row: int, values: Sequence[float],
                      around: str = "zero", noise_mode: str = "const", batch_size: int = 8) -> tuple[np.ndarray, torch.Tensor]:
    """Frames of one styleblock scaled over ``values``.

    Args:
        G: generator. ws: ``[1, num_ws, w_dim]``. row: styleblock. values: factors.
        around: ``"zero"`` (multiply the row) or ``"avg"`` (scale about ``G.w_avg``).

    Returns:
        ``(frames uint8 [F, H, W, C], scaled ws float32 [F, num_ws, w_dim])``.

    Raises:
        ValueError: unknown ``around``, bad shapes or row.
    """
    if around not in ("zero", "avg"):
        raise UsageError(f"--around must be zero or avg, got {around!r}")
    center = G.w_avg.detach().to(torch.float32) if around == "avg" else None
    scaled = scale_row(ws.to(torch.float32), row, values, center)
    return render_ws(G, scaled, noise_mode, batch_size), scaled


def mix_styles(row_ws: torch.Tensor, col_ws: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """Style mixing (Karras et al. 2019, §3.1): the rows ``rows`` from ``col_ws``, the rest from ``row_ws``.

    In the ``clipstyle mix`` grid, cell (a, b) is ``mix_styles(A[a], B[b], blocks)``: the *column*
    source provides the chosen styleblocks, the *row* source everything else (so ``0-3`` = coarse
    styles such as pose from the column image, the rest from the row image).

    Args:
        row_ws, col_ws: ``[N, num_ws, w_dim]`` (or ``[num_ws, w_dim]``), same shape.
        rows: styleblock indices taken from ``col_ws``.

    Returns:
        float32 ``[N, num_ws, w_dim]``; every row is a bit-exact copy of one source's row.

    Raises:
        ValueError: shapes differ, or a row is out of range.
    """
    a = row_ws[None] if row_ws.ndim == 2 else row_ws
    b = col_ws[None] if col_ws.ndim == 2 else col_ws
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"style mixing needs two latents of the same shape, got {list(a.shape)} and {list(b.shape)}")
    out = a.to(torch.float32).clone()
    for r in rows:
        if not 0 <= int(r) < a.shape[1]:
            raise UsageError(f"styleblock {r} is out of range 0-{a.shape[1] - 1}")
        out[:, int(r)] = b[:, int(r)].to(torch.float32)
    return out
