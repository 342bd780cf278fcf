"""Command-line constraint and latent-source specs shared by every optimizing command.

* **Latent sources** (``mix --rows/--cols``, ``interpolate``, ``styleblocks``, ``--mix``): an item is
  either a seed or a latent ``.npz`` file:

  - ``42`` — ``z = RandomState(42).randn(1, z_dim)`` (NVIDIA's ``gen_images.py`` draw) through
    ``G.mapping`` with truncation psi 1 (or the command's ``--truncation``);
  - ``42@0.7`` — the same with truncation psi 0.7 (``w = w_avg + psi·(w − w_avg)``, all rows);
  - ``0-3`` — seeds 0, 1, 2, 3 (only where a list of sources is accepted);
  - ``face.npz`` — every item of the file (``ws``, or NVIDIA's ``w``); ``face.npz#2`` — item 2 only.

  Anything that is not ``digits`` / ``digits@number`` / ``digits-digits`` is a file path.

* **Style mixing as a constraint** (``--mix SOURCE:BLOCKS``, e.g. ``42:0-3``, ``42@0.7:coarse``,
  ``face.npz:fine``): the rows of ``ws`` named by ``BLOCKS`` (indices, inclusive ranges, ``coarse``
  / ``middle`` / ``fine``) are fixed, bit-exactly, to the same rows of the source's ``ws`` during the
  whole optimization (Karras et al. 2019, "A Style-Based Generator Architecture for GANs", §3.1:
  styles of those layers come from the other latent). A file source uses its item 0 unless ``#i``
  is given. The split is at the *last* ``:``, so paths with ``:`` work.

* **Network blending as a constraint** (``--blend NETWORK@RES[:SMOOTH]``, e.g. ``toon.pkl@32`` or
  ``toon.pkl@16:1.0``): optimize and render in :func:`~clipstyle.generator.blend.blend_generators`
  ``(G, NETWORK, RES, SMOOTH)`` — synthesis layers up to ``RES`` from the main network, the rest from
  ``NETWORK`` (Pinkney & Adler 2020). ``NETWORK`` is an alias, path or URL.

Errors are :class:`SpecError` (a ``ValueError``) with a one-line message; missing/invalid latent
files raise :class:`~clipstyle.latents.LatentFileError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.latents import load_latents, parse_blocks, seed_z
from clipstyle.errors import UsageError

__all__ = ["SpecError", "LatentSource", "parse_source", "parse_sources", "parse_mix", "merge_mixes", "apply_mix",
           "constraint_rows", "latent_l2_weight", "BlendSpec", "parse_blend_spec", "blend_from_spec",
           "batch_starts", "JITTER_PSI"]

#: Without ``--seed``, item i of a ``--batch`` starts at seed i with this truncation psi: close to
#: ``w_avg`` (a "small seeded jitter" of the average face) yet distinct per item.
JITTER_PSI = 0.25

_SEED = re.compile(r"^(\d+)(?:@([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?))?$")
_SEED_RANGE = re.compile(r"^(\d+)-(\d+)$")
_FILE_INDEX = re.compile(r"^(.*)#(\d+)$")
_BLEND = re.compile(r"^(?P<net>.+)@(?P<at>\d+)(?::(?P<smooth>[-+]?\d*\.?\d+))?$")


class SpecError(UsageError):
    """A ``--mix`` / ``--blend`` / source spec that does not parse (one-line message)."""


@dataclass(frozen=True)
class LatentSource:
    """One latent from a seed or a file.

    Attributes:
        label: short name for file names and grids (``seed42``, ``face``, ``face#1``).
        ws: float32 ``[1, num_ws, w_dim]`` on the requested device.
        z: float32 ``[1, z_dim]`` (seeds, and files that store ``z``) or ``None``.
        seed: the seed, for seed sources.
        psi: truncation psi applied to a seed (1 = none).
    """

    label: str
    ws: torch.Tensor
    z: torch.Tensor | None = None
    seed: int | None = None
    psi: float = 1.0


def _labels_c(G: Any, c: torch.Tensor | None, device: Any) -> torch.Tensor:
    if c is not None:
        return c[:1].to(device)
    if G.c_dim:
        raise SpecError("this network is conditional: give a class label (--class) for seed latents")
    return torch.zeros([1, 0], device=device)


@torch.no_grad()
def _seed_source(G: Any, seed: int, psi: float, device: Any, c: torch.Tensor | None) -> LatentSource:
    if seed >= 2**32:
        raise SpecError(f"seed {seed} is out of range 0 … 2**32-1")
    z = torch.from_numpy(seed_z(seed, G.z_dim)).to(device, torch.float32)
    ws = G.mapping(z, _labels_c(G, c, device), truncation_psi=psi).to(torch.float32)
    label = f"seed{seed}" if psi == 1 else f"seed{seed}@{psi:g}"
    return LatentSource(label, ws, z, seed, psi)


def parse_source(item: str, G: Any, device: Any = "cpu", truncation_psi: float = 1.0,
                 c: torch.Tensor | None = None, allow_many: bool = True) -> list[LatentSource]:
    """Resolve one source item (see the module docstring) into latents.

    Args:
        item: ``42``, ``42@0.7``, ``0-3``, ``file.npz`` or ``file.npz#i``.
        G: the generator (for ``mapping``, ``num_ws``, ``w_dim``, ``z_dim``, ``c_dim``).
        device: device of the returned tensors.
        truncation_psi: psi for seeds without their own ``@psi``.
        c: ``[1, c_dim]`` label for conditional networks (seeds only).
        allow_many: accept items that give several latents (seed ranges, multi-item files).

    Returns:
        A list of :class:`LatentSource` (one unless ``allow_many``).

    Raises:
        SpecError: empty item, bad range, out-of-range seed or index, several latents where one is needed.
        LatentFileError: a missing or malformed file, or one whose shape does not fit ``G``.
    """
    item = item.strip()
    if not item:
        raise SpecError("empty latent source: give a seed (42), seeds (0-3) or a latent .npz file")
    m = _SEED.match(item)
    if m:
        psi = float(m.group(2)) if m.group(2) is not None else float(truncation_psi)
        return [_seed_source(G, int(m.group(1)), psi, device, c)]
    m = _SEED_RANGE.match(item)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise SpecError(f"bad seed range {item!r}: start is after end")
        if not allow_many and hi > lo:
            raise SpecError(f"{item!r} names several seeds; one latent is needed here")
        return [_seed_source(G, s, float(truncation_psi), device, c) for s in range(lo, hi + 1)]
    index = None
    m = _FILE_INDEX.match(item)
    if m and not Path(item).is_file():
        item, index = m.group(1), int(m.group(2))
    data = load_latents(item, num_ws=G.num_ws, w_dim=G.w_dim)
    n = data.ws.shape[0]
    if index is not None and index >= n:
        raise SpecError(f"{item} holds {n} latent(s); index #{index} is out of range")
    z_all = data.z if data.z is not None and data.z.ndim == 2 and data.z.shape == (n, G.z_dim) else None
    stem = Path(item).stem
    picks = [index] if index is not None else list(range(n))
    if not allow_many and len(picks) > 1:
        picks = [0]  # one latent needed: item 0 (documented)
    out = []
    for i in picks:
        ws = torch.from_numpy(np.ascontiguousarray(data.ws[i : i + 1])).to(device, torch.float32)
        z = torch.from_numpy(z_all[i : i + 1].astype(np.float32)).to(device) if z_all is not None else None
        label = stem if n == 1 else f"{stem}#{i}"
        out.append(LatentSource(label, ws, z))
    return out


def parse_sources(spec: str, G: Any, device: Any = "cpu", truncation_psi: float = 1.0,
                  c: torch.Tensor | None = None) -> list[LatentSource]:
    """A comma-separated list of source items (``0-3,7,face.npz``) → latents, in order.

    Raises:
        SpecError / LatentFileError: see :func:`parse_source`; an empty list.
    """
    items = [s for s in str(spec).split(",")]
    if not any(s.strip() for s in items):
        raise SpecError("no latent sources given: use seeds (0-3,7) or latent .npz files")
    out: list[LatentSource] = []
    for s in items:
        out.extend(parse_source(s, G, device, truncation_psi, c))
    return out


def parse_mix(spec: str, G: Any, device: Any = "cpu", c: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
    """Parse ``--mix SOURCE:BLOCKS`` into the ``mix`` argument of :class:`~clipstyle.latents.Latent`.

    Args:
        spec: ``42:0-3``, ``42@0.7:coarse`` (seed through the mapping with psi 0.7; psi 1 by
            default), ``face.npz:fine``, ``face.npz#1:4-7``.
        G: the generator the optimization runs in.
        device: device of the returned rows.
        c: label ``[1, c_dim]`` for conditional networks.

    Returns:
        ``{row: float32 [w_dim] tensor}``, each row the source's own row (bit-exact copy).

    Raises:
        SpecError: no ``:``, a source naming several latents, bad seed.
        BlockSpecError: bad block set for this network.
        LatentFileError: missing or malformed latent file.
    """
    spec = str(spec).strip()
    if ":" not in spec:
        raise SpecError(f"--mix {spec!r} needs SOURCE:BLOCKS, e.g. 42:0-3, 42@0.7:coarse or face.npz:fine")
    source, blocks = spec.rsplit(":", 1)
    rows = parse_blocks(blocks, G.num_ws, G.block_groups()) if blocks.strip() else None
    if rows is None:
        raise SpecError(f"--mix {spec!r}: say which styleblocks to take after the ':' (e.g. 0-3 or coarse)")
    (src,) = parse_source(source, G, device, 1.0, c, allow_many=False)
    return {int(r): src.ws[0, r].clone() for r in rows}


def merge_mixes(mixes: list[dict[int, torch.Tensor]]) -> dict[int, torch.Tensor]:
    """Combine several ``--mix`` constraints; a row named twice keeps the later one."""
    out: dict[int, torch.Tensor] = {}
    for m in mixes:
        out.update(m)
    return out


def apply_mix(ws: torch.Tensor, mix: dict[int, torch.Tensor] | None) -> torch.Tensor:
    """A copy of ``ws [N, num_ws, w_dim]`` with the mixed rows replaced, bit-exactly as
    :class:`~clipstyle.latents.Latent` fixes them (the start of a mixed optimization)."""
    out = ws.detach().clone()
    n, _, w_dim = out.shape
    for row, value in (mix or {}).items():
        out[:, int(row)] = value.to(out).expand(n, w_dim)
    return out


def constraint_rows(G: Any, blocks: str | None, mix: list[str] | tuple[str, ...] = (), recipe: Any = None,
                    device: Any = "cpu", c: torch.Tensor | None = None
                    ) -> tuple[tuple[int, ...], dict[int, torch.Tensor]]:
    """The free rows and mixed rows of an optimizing command.

    Args:
        G: the generator (``num_ws``, ``block_groups()``, ``mapping`` for seed sources).
        blocks: ``--blocks`` (``None`` = the recipe's blocks, else every row).
        mix: the ``--mix SOURCE:BLOCKS`` specs (later ones win on shared rows).
        recipe: a :class:`~clipstyle.guidance.recipes.Recipe` (anything with ``rows(num_ws, groups)``) or ``None``.
        device: device of the mixed rows.
        c: label ``[1, c_dim]`` for conditional networks (seed sources).

    Returns:
        ``(free rows, {row: [w_dim] tensor})``; the free rows still include mixed ones
        (:class:`~clipstyle.latents.Latent` drops them).

    Raises:
        SpecError: every free row is fixed by ``--mix`` (nothing left to optimize), or a bad spec.
        BlockSpecError / LatentFileError: see :func:`parse_mix`.
    """
    if blocks is None and recipe is not None:
        free = recipe.rows(G.num_ws, G.block_groups())  # latents never import guidance: the recipe knows its rows
    else:
        free = parse_blocks(blocks, G.num_ws, G.block_groups())
    mixed = merge_mixes([parse_mix(spec, G, device, None if c is None else c[:1]) for spec in mix])
    if not set(free) - set(mixed):
        raise SpecError("every styleblock chosen by --blocks is fixed by --mix: nothing left to optimize")
    return free, mixed


def latent_l2_weight(l2: float | None, recipe: Any, num_ws: int, w_dim: int, default: float = 0.0) -> float:
    """The :class:`~clipstyle.guidance.LatentL2` weight: ``--l2`` when given, else the recipe's keep weight
    (:func:`~clipstyle.guidance.recipes.keep_weight`), else ``default``."""
    if l2 is not None:
        return float(l2)
    if recipe is not None:
        return recipe.keep_weight(num_ws, w_dim)
    return float(default)


@dataclass(frozen=True)
class BlendSpec:
    """A parsed ``--blend NETWORK@RES[:SMOOTH]``."""

    network: str
    at: int
    smooth: float | None = None


def parse_blend_spec(spec: str) -> BlendSpec:
    """``toon.pkl@32`` → ``BlendSpec('toon.pkl', 32, None)``; ``toon.pkl@16:1.5`` → smooth 1.5.

    Raises:
        SpecError: not of the form ``NETWORK@RES[:SMOOTH]``, ``RES`` not a power of two >= 4,
            negative ``SMOOTH``.
    """
    m = _BLEND.match(str(spec).strip())
    if not m:
        raise SpecError(f"--blend {spec!r} must look like NETWORK@RES[:SMOOTH], e.g. toon.pkl@32 or toon.pkl@16:1.0")
    at = int(m.group("at"))
    if at < 4 or at & (at - 1):
        raise SpecError(f"--blend resolution must be a power of two >= 4 (4, 8, 16, 32, …), got {at}")
    smooth = float(m.group("smooth")) if m.group("smooth") is not None else None
    if smooth is not None and smooth < 0:
        raise SpecError(f"--blend smoothness must be >= 0 octaves, got {smooth}")
    return BlendSpec(m.group("net"), at, smooth)


def blend_from_spec(G: Any, spec: str, device: Any = "cpu", *, progress: bool = True) -> Any:
    """Load ``NETWORK`` of ``spec`` and return ``blend_generators(G, NETWORK, RES, SMOOTH)`` on ``device``.

    ``G`` is not modified; nothing is written to disk.

    Raises:
        SpecError: bad spec. CheckpointError: architectures differ, or an unreadable network.
        FileNotFoundError / DownloadError: ``NETWORK`` cannot be found.
    """
    from clipstyle.generator import load_generator
    from clipstyle.generator.blend import blend_generators, check_cut

    bs = parse_blend_spec(spec)
    check_cut(G, bs.at, f"--blend {spec}: the resolution")  # before loading the second network
    other = load_generator(bs.network, device=device, progress=progress)
    return blend_generators(G, other, bs.at, bs.smooth).to(device)


@torch.no_grad()
def batch_starts(G: Any, n: int, seed: int | None = None, truncation_psi: float = 1.0,
                 c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Start latents for a batch of ``n`` optimizations.

    With a seed: item ``i`` is seed ``seed + i`` (psi ``truncation_psi``), as
    :func:`clipstyle.latents.start_ws` does. Without: item ``i`` is seed ``i`` truncated with
    :data:`JITTER_PSI` (0.25), i.e. ``w_avg + 0.25·(mapping(z_i) − w_avg)``: a small, reproducible
    jitter around the average latent so the ``n`` results differ.

    Returns:
        ``(ws [n, num_ws, w_dim] float32, z [n, z_dim] float32)`` on ``G.w_avg``'s device.

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise UsageError(f"--batch must be >= 1, got {n}")
    device = G.w_avg.device
    first, psi = (0, JITTER_PSI) if seed is None else (seed, truncation_psi)
    if first + n - 1 >= 2**32:
        raise SpecError("seed + batch exceeds 2**32-1")
    z = torch.from_numpy(np.concatenate([seed_z(first + i, G.z_dim) for i in range(n)])).to(device, torch.float32)
    cc = torch.zeros([n, G.c_dim], device=device) if c is None else c[:1].expand(n, -1).to(device)
    ws = G.mapping(z, cc, truncation_psi=psi).to(torch.float32)
    return ws, z
