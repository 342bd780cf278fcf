"""The ``Latent``: which rows of ``ws`` are free, which are fixed, and ``.npz`` latent files.

``ws`` is the W+ latent ``[N, num_ws, w_dim]`` float32; a *styleblock* is one row. Rows are named by
index (``0-3,8``) or by group (``coarse`` 4²–8², ``middle`` 16²–32², ``fine`` 64²+, from the
resolution of the layers each row drives).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from clipstyle.errors import UsageError

GROUP_NAMES = ("coarse", "middle", "fine")


class BlockSpecError(ValueError):
    """A block set such as ``0-3,8`` or ``coarse`` that does not parse or is out of range."""


class LatentFileError(ValueError):
    """A latent file that is missing, unreadable or has the wrong shape."""


def parse_blocks(spec: str | None, num_ws: int, groups: Sequence[str] | None = None) -> tuple[int, ...]:
    """Parse a block set into sorted row indices.

    Args:
        spec: comma-separated items, each an index (``8``), an inclusive range (``0-3``), a group name
            (``coarse`` | ``middle`` | ``fine``) or ``all``. ``None``/empty = all rows.
        num_ws: number of rows of ``ws``.
        groups: the group of each row (``G.block_groups()``), needed for group names.

    Returns:
        Sorted unique row indices in ``[0, num_ws)``.

    Raises:
        BlockSpecError: malformed item, reversed range, index out of range, unknown group, empty set.
    """
    if spec is None or not str(spec).strip() or str(spec).strip().lower() == "all":
        return tuple(range(num_ws))
    rows: set[int] = set()
    for raw in str(spec).split(","):
        item = raw.strip().lower()
        if not item:
            raise BlockSpecError(f"empty item in block set {spec!r}")
        if item in GROUP_NAMES:
            if groups is None:
                raise BlockSpecError(f"group name {item!r} needs the network's block groups")
            found = [i for i, g in enumerate(groups) if g == item]
            if not found:
                raise BlockSpecError(f"this network has no {item} styleblocks")
            rows.update(found)
            continue
        if item == "all":
            rows.update(range(num_ws))
            continue
        try:
            if "-" in item[1:]:
                a, b = item.split("-", 1) if not item.startswith("-") else (None, None)
                lo, hi = int(a), int(b)
            else:
                lo = hi = int(item)
        except (TypeError, ValueError):
            raise BlockSpecError(f"bad block {raw.strip()!r} in {spec!r}: use indices like 0-3,8 or "
                                 f"coarse/middle/fine") from None
        if lo > hi:
            raise BlockSpecError(f"bad block range {raw.strip()!r}: start is after end")
        if lo < 0 or hi >= num_ws:
            raise BlockSpecError(f"block {raw.strip()!r} is out of range: this network has styleblocks 0-{num_ws - 1}")
        rows.update(range(lo, hi + 1))
    return tuple(sorted(rows))


def seed_z(seed: int, z_dim: int) -> np.ndarray:
    """``z`` for a seed exactly as NVIDIA's scripts draw it: ``RandomState(seed).randn(1, z_dim)`` → ``[1, z_dim]`` float64."""
    if seed < 0 or seed >= 2**32:
        raise UsageError(f"seed must be in [0, 2**32), got {seed}")
    return np.random.RandomState(seed).randn(1, z_dim)


@dataclass(frozen=True)
class LatentFile:
    """Contents of a latent ``.npz``: ``ws [N, num_ws, w_dim]`` float32, optional ``z``/``c``, meta dict."""

    ws: np.ndarray
    z: np.ndarray | None = None
    c: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_latents(path: str | Path, ws: torch.Tensor | np.ndarray, z: Any = None, c: Any = None,
                 meta: dict[str, Any] | None = None) -> None:
    """Write a latent file atomically.

    Keys: ``ws`` ``[N, num_ws, w_dim]`` float32; ``w`` (the same array: what NVIDIA's
    ``gen_images.py --projected-w`` reads); optional ``z`` ``[N, z_dim]``, ``c`` ``[N, c_dim]``; ``meta``
    (a JSON string).
    """
    from clipstyle.io.files import atomic_save_npz

    arr = ws.detach().cpu().numpy() if torch.is_tensor(ws) else np.asarray(ws)
    if arr.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got shape {list(arr.shape)}")
    arrays: dict[str, np.ndarray] = {"ws": arr.astype(np.float32), "w": arr.astype(np.float32)}
    for key, value in (("z", z), ("c", c)):
        if value is not None:
            arrays[key] = (value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)).astype(np.float32)
    arrays["meta"] = np.array(json.dumps(meta or {}, default=str))
    atomic_save_npz(path, **arrays)


def load_latents(path: str | Path, num_ws: int | None = None, w_dim: int | None = None) -> LatentFile:
    """Read a latent ``.npz`` (ours, or NVIDIA's ``projected_w.npz`` with key ``w``).

    ``w`` of shape ``[w_dim]`` or ``[N, w_dim]`` is broadcast to every row when ``num_ws`` is given.

    Raises:
        LatentFileError: missing file, not an npz, no ``ws``/``w`` key, or shape mismatch with
            ``num_ws``/``w_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise LatentFileError(f"no such latent file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise LatentFileError(f"{path} is not a readable .npz latent file ({type(exc).__name__})") from None
    key = "ws" if "ws" in arrays else "w" if "w" in arrays else None
    if key is None:
        raise LatentFileError(f"{path} has no 'ws' or 'w' array (found: {', '.join(arrays) or 'nothing'})")
    ws = arrays[key].astype(np.float32)
    if ws.ndim == 1:
        ws = ws[None]
    if ws.ndim == 2:
        if num_ws is None:
            raise LatentFileError(f"{path}: a [N, w_dim] latent needs the network's num_ws")
        ws = np.repeat(ws[:, None, :], num_ws, axis=1)
    if ws.ndim != 3:
        raise LatentFileError(f"{path}: ws must be [N, num_ws, w_dim], got shape {list(ws.shape)}")
    if (num_ws is not None and ws.shape[1] != num_ws) or (w_dim is not None and ws.shape[2] != w_dim):
        raise LatentFileError(f"{path}: ws has shape {list(ws.shape)} but this network needs "
                              f"[N, {num_ws}, {w_dim}]")
    meta: dict[str, Any] = {}
    if "meta" in arrays:
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError:
            meta = {}
    return LatentFile(ws=ws, z=arrays.get("z"), c=arrays.get("c"), meta=meta)


class Latent(nn.Module):
    """A W+ latent under constraints; the only trainable thing in an optimization.

    ``ws()`` returns ``[N, num_ws, w_dim]`` where rows in ``free_rows`` come from the parameter and
    every other row is *bit-identical* to ``fixed`` (the start, with mixed-in rows replaced).

    Args:
        start: ``[N, num_ws, w_dim]`` float32 start latent.
        free_rows: rows that may change (default: all).
        mix: ``{row: [N, w_dim] or [w_dim] tensor}`` rows fixed to another latent (style mixing as a
            constraint); a mixed row is never free.
        space: ``"w+"`` (a vector per free row) or ``"w"`` (one vector shared by every free row, started
            from the mean of the start's free rows).
        trust_radius: if set, after each step every free row is pulled back to within this L2
            distance of its start row (units of w).

    Raises:
        ValueError: bad shapes, an unknown space, or no free rows left.
    """

    def __init__(self, start: torch.Tensor, free_rows: Sequence[int] | None = None,
                 mix: dict[int, torch.Tensor] | None = None, space: str = "w+",
                 trust_radius: float | None = None) -> None:
        super().__init__()
        if start.ndim != 3:
            raise ValueError(f"start must be [N, num_ws, w_dim], got {list(start.shape)}")
        if space not in ("w", "w+"):
            raise UsageError(f"space must be 'w' or 'w+', got {space!r}")
        n, num_ws, w_dim = start.shape
        start = start.detach().to(torch.float32).clone()
        fixed = start.clone()
        free = set(range(num_ws) if free_rows is None else (int(r) for r in free_rows))
        for row, value in (mix or {}).items():
            if not 0 <= row < num_ws:
                raise UsageError(f"mixed row {row} is out of range 0-{num_ws - 1}")
            fixed[:, row] = value.to(fixed).expand(n, w_dim)
            free.discard(row)
        if not free:
            raise UsageError("no free styleblocks left to optimize")
        mask = torch.zeros(num_ws, dtype=torch.bool)
        mask[sorted(free)] = True
        self.space, self.trust_radius = space, trust_radius
        self.register_buffer("start", start)   # [N, num_ws, w_dim]
        self.register_buffer("fixed", fixed)   # [N, num_ws, w_dim]
        self.register_buffer("mask", mask)     # [num_ws]
        if space == "w":
            init = start[:, mask].mean(dim=1, keepdim=True)  # [N, 1, w_dim]
        else:
            init = start.clone()
        self.param = nn.Parameter(init)

    @property
    def free_rows(self) -> tuple[int, ...]:
        return tuple(int(i) for i in torch.nonzero(self.mask).flatten())

    def ws(self) -> torch.Tensor:
        """Current ``[N, num_ws, w_dim]``; fixed rows are exactly ``self.fixed``."""
        free = self.param.expand_as(self.fixed)
        return torch.where(self.mask[None, :, None], free, self.fixed)

    @torch.no_grad()
    def constrain_(self) -> None:
        """Apply the trust radius (call after each optimizer step)."""
        if self.trust_radius is None:
            return
        start = self.start if self.space == "w+" else self.start[:, self.mask].mean(dim=1, keepdim=True)
        delta = self.param - start
        norm = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.param.copy_(start + delta * (self.trust_radius / norm).clamp(max=1.0))


@torch.no_grad()
def start_ws(G: Any, seed: int | None = None, truncation_psi: float = 1.0, c: torch.Tensor | None = None,
             batch: int = 1, truncation_cutoff: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The start latent of an optimization: ``w_avg`` (no seed) or ``mapping(z(seed + i), c, psi)``.

    Seeds draw ``z`` exactly as NVIDIA's ``gen_images.py`` (``RandomState(seed).randn(1, z_dim)``), so
    seed 42 starts from the same image in both. With a batch, item ``i`` uses seed ``seed + i``.

    Returns:
        ``(ws [batch, num_ws, w_dim] float32, z [batch, z_dim] or None)`` on ``G.w_avg``'s device.
    """
    device = G.w_avg.device
    if seed is None:
        ws = G.w_avg.detach().to(torch.float32)[None, None].repeat(batch, G.num_ws, 1)
        return ws, None
    z = torch.from_numpy(np.concatenate([seed_z(seed + i, G.z_dim) for i in range(batch)])).to(device, torch.float32)
    if c is None:
        c = torch.zeros([batch, G.c_dim], device=device)
    ws = G.mapping(z, c.expand(batch, -1), truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    return ws.to(torch.float32), z
