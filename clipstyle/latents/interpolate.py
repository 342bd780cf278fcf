"""Latent interpolation: lerp and slerp between keyframe latents, in W(+) or in Z.

* **lerp**: ``x(t) = a + t·(b − a)`` (``torch.lerp``; exact at both ends).
* **slerp** (Shoemake 1985, "Animating Rotation with Quaternion Curves"): with ``â, b̂`` the
  unit vectors of ``a − c`` and ``b − c`` and ``Ω = arccos(â·b̂)``,
  ``x(t) = c + [sin((1−t)Ω)·(a − c) + sin(tΩ)·(b − c)] / sin Ω``. Computed along the last
  dimension (per ``ws`` row), in float64, returned in the input dtype; ``t`` = 0 and 1 return the
  inputs exactly. Nearly parallel (``Ω < 1e-4``) or opposite (``π − Ω < 1e-4``) vectors fall back
  to lerp (the great circle is then undefined or numerically unstable). ``c`` is the centre: 0 in
  Z (standard normal samples concentrate on a sphere, so slerp keeps the norm typical), ``w_avg``
  in W (W is not centred on 0).

Frame counts: ``frames`` is the number of frames *per segment* (keyframe to next keyframe). With
K keyframes and no loop there are ``K − 1`` segments and ``frames·(K − 1) + 1`` frames (the last
is keyframe K); with ``loop`` the path returns to the first keyframe over one more segment, giving
``frames·K`` frames, the start not repeated, so the GIF loops seamlessly.
"""

from __future__ import annotations

import math

import torch

from clipstyle.errors import UsageError

__all__ = ["MODES", "lerp", "slerp", "path_positions", "interpolate_path", "frame_count"]

MODES = ("lerp", "slerp")
_EPS = 1e-4


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation ``a + t·(b − a)``, exact at ``t`` = 0 and 1. Shapes: any, equal."""
    return torch.lerp(a, b, float(t))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, center: torch.Tensor | None = None) -> torch.Tensor:
    """Spherical interpolation along the last dimension (see the module docstring).

    Args:
        a, b: float tensors of the same shape ``[..., D]``.
        t: position in [0, 1] (values outside extrapolate along the great circle).
        center: ``[D]`` (broadcast) centre of the sphere, ``None`` = 0.

    Returns:
        Tensor like ``a``; ``a`` itself (a copy) at ``t == 0``, ``b`` at ``t == 1``.

    Raises:
        ValueError: shapes differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp needs equal shapes, got {list(a.shape)} and {list(b.shape)}")
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    dtype = a.dtype
    c = torch.zeros((), dtype=torch.float64, device=a.device) if center is None else center.to(a.device, torch.float64)
    u, v = a.to(torch.float64) - c, b.to(torch.float64) - c
    nu, nv = u.norm(dim=-1, keepdim=True), v.norm(dim=-1, keepdim=True)
    cos = ((u * v).sum(-1, keepdim=True) / (nu * nv).clamp_min(1e-30)).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    degenerate = (omega < _EPS) | (math.pi - omega < _EPS) | (nu == 0) | (nv == 0)
    safe_sin = torch.where(degenerate, torch.ones_like(sin), sin)
    wa = torch.where(degenerate, torch.full_like(sin, 1 - t), torch.sin((1 - t) * omega) / safe_sin)
    wb = torch.where(degenerate, torch.full_like(sin, t), torch.sin(t * omega) / safe_sin)
    return (c + wa * u + wb * v).to(dtype)


def frame_count(num_keys: int, frames: int, loop: bool) -> int:
    """Total frames of a path: ``frames·(K−1) + 1`` without loop, ``frames·K`` with loop."""
    if num_keys < 2:
        raise UsageError("interpolation needs at least two keyframes")
    if frames < 1:
        raise UsageError(f"--frames must be >= 1, got {frames}")
    return frames * num_keys if loop else frames * (num_keys - 1) + 1


def path_positions(num_keys: int, frames: int, loop: bool) -> list[tuple[int, int, float]]:
    """``(from_key, to_key, t)`` of every frame, in order (see :func:`frame_count`).

    Raises:
        ValueError: fewer than two keyframes, ``frames < 1``.
    """
    total = frame_count(num_keys, frames, loop)
    out = []
    for k in range(total):
        seg, step = divmod(k, frames)
        if seg == num_keys - 1 and not loop:  # the very last frame: the final keyframe
            out.append((num_keys - 2, num_keys - 1, 1.0))
        else:
            out.append((seg, (seg + 1) % num_keys, step / frames))
    return out


def interpolate_path(keys: torch.Tensor, frames: int, mode: str = "lerp", loop: bool = False,
                     center: torch.Tensor | None = None) -> torch.Tensor:
    """Interpolate through keyframes.

    Args:
        keys: ``[K, ...]`` keyframes (``[K, num_ws, w_dim]`` in W, ``[K, z_dim]`` in Z), K >= 2.
        frames: frames per segment.
        mode: ``lerp`` or ``slerp``.
        loop: return to the first keyframe.
        center: slerp centre (``[D]``), ignored by lerp.

    Returns:
        ``[T, ...]`` with T = :func:`frame_count`; frame ``i·frames`` is keyframe ``i`` exactly.

    Raises:
        ValueError: unknown mode, fewer than two keyframes, ``frames < 1``.
    """
    if mode not in MODES:
        raise UsageError(f"--mode must be lerp or slerp, got {mode!r}")
    out = []
    for i, j, t in path_positions(keys.shape[0], frames, loop):
        a, b = keys[i], keys[j]
        out.append(lerp(a, b, t) if mode == "lerp" else slerp(a, b, t, center))
    return torch.stack(out)
