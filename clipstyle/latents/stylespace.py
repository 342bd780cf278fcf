"""Work in StyleSpace S (Wu et al. 2021): channel statistics, StyleCLIP's global-direction edit, S direction
files, and an optimizable S parameterization for the one optimization loop.

* **Statistics**: mean and standard deviation of every S channel over styles of sampled ``w = f(z)``.
* **Global direction** (Patashnik et al. 2021, "StyleCLIP", §6): with ``Δi_c`` the unit CLIP-space direction
  of channel ``c`` (:mod:`clipstyle.guidance.global_directions`) and ``Δt`` the unit text direction, the
  relevance is ``R_c = Δi_c · Δt``; channels with ``|R_c| < β`` stay untouched, and the others move in
  proportion to ``R_c``: ``Δs_c = σ_c · R_c / max_c' |R_c'|``, the edit is ``s' = s + α·Δs``.
* **Files**: an S direction is an ``.npz`` holding ``s_direction`` ``[C]`` (every layer, toRGB included, in
  network order) and ``s_layout`` (the layer names and widths as one JSON string), so ``direction apply``
  can check that it fits the network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.errors import BadFileError, UsageError
from clipstyle.generator.stylespace import (
    StyleLayer,
    flatten_styles,
    style_layers,
    unflatten_styles,
)

__all__ = [
    "GlobalDirection",
    "SDirectionError",
    "StyleLatent",
    "StyleStats",
    "edit_flat",
    "global_direction",
    "is_s_direction",
    "load_s_direction",
    "render_flat",
    "s_layout",
    "sample_ws",
    "save_s_direction",
    "style_statistics",
]

#: Key of the direction in an S direction ``.npz``; its layout key.
S_KEY, LAYOUT_KEY = "s_direction", "s_layout"


class SDirectionError(BadFileError):
    """An S direction or relevance file that does not fit the network (one line)."""


@dataclass(frozen=True)
class StyleStats:
    """Per-channel statistics of S, float32 ``[C]`` each (flat order of ``style_layers(G)``, toRGB included)."""

    mean: torch.Tensor
    std: torch.Tensor
    samples: int


@torch.no_grad()
def sample_ws(G: Any, n: int, generator: torch.Generator, truncation: float = 1.0) -> torch.Tensor:
    """``n`` latents ``ws = mapping(z, c, ψ)`` ``[n, num_ws, w_dim]`` on G's device, ``z ~ N(0, I)`` drawn on the CPU
    from ``generator`` (so the samples do not depend on the device); conditional networks get a uniformly random
    class per sample (drawn after z, from the same generator)."""
    dev = G.w_avg.device
    z = torch.randn(n, G.z_dim, generator=generator)
    c = None
    if G.c_dim:
        c = torch.nn.functional.one_hot(torch.randint(G.c_dim, (n,), generator=generator), G.c_dim).float().to(dev)
    return G.mapping(z.to(dev), c, truncation_psi=truncation)


@torch.no_grad()
def style_statistics(G: Any, samples: int = 10_000, seed: int = 0, truncation: float = 1.0,
                     batch: int = 1000) -> StyleStats:
    """Mean and standard deviation of every S channel over ``samples`` styles of ``w = mapping(z)``, ``z ~ N(0, I)``
    drawn from ``torch.Generator().manual_seed(seed)`` (on the CPU, so the result does not depend on the device).

    Only the affines run (no image is rendered): seconds even for 1024² networks. Conditional networks get a
    uniformly random class per sample.

    Raises:
        UsageError: ``samples < 2``.
    """
    if samples < 2:
        raise UsageError(f"style statistics need at least 2 samples, got {samples}")
    gen = torch.Generator().manual_seed(int(seed))
    layers = style_layers(G)
    total = torch.zeros(sum(l.width for l in layers), dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        ws = sample_ws(G, n, gen, truncation)
        flat = flatten_styles(G.styles(ws), layers).double().cpu()
        total += flat.sum(0)
        total_sq += flat.square().sum(0)
        done += n
    mean = total / samples
    var = (total_sq - samples * mean.square()).clamp_min(0) / (samples - 1)
    return StyleStats(mean.float(), var.sqrt().float(), samples)


@dataclass(frozen=True)
class GlobalDirection:
    """A StyleCLIP global direction.

    Attributes:
        direction: float32 ``[C]`` ``Δs`` in the full S layout (zero on channels below β and on layers the
            relevance does not cover); the edit is ``s + α·direction``.
        relevance: float32 ``[C]`` ``R_c = Δi_c·Δt`` (0 where not covered).
        channels: flat indices of the channels used, by decreasing ``|R_c|``.
        beta: the threshold used.
    """

    direction: torch.Tensor
    relevance: torch.Tensor
    channels: tuple[int, ...]
    beta: float


def global_direction(delta_i: torch.Tensor, delta_t: torch.Tensor, std: torch.Tensor, beta: float,
                     covered: torch.Tensor | None = None) -> GlobalDirection:
    """``Δs`` from the channel directions, the text direction and β (StyleCLIP §6).

    Args:
        delta_i: float ``[C, D]`` unit CLIP direction of every S channel (rows of uncovered channels ignored).
        delta_t: float ``[D]`` unit text direction.
        std: float ``[C]`` channel standard deviations σ_c.
        beta: disentanglement threshold ≥ 0 (channels with ``|R_c| < β`` are left alone).
        covered: bool ``[C]``: channels the relevance covers (default all).

    Returns:
        :class:`GlobalDirection`; ``Δs_c = σ_c · R_c / max|R|`` on the kept channels, 0 elsewhere (all zero when
        no channel reaches β).

    Raises:
        UsageError: negative β. ValueError: shapes that do not fit.
    """
    if beta < 0:
        raise UsageError(f"--beta must be >= 0, got {beta}")
    if delta_i.ndim != 2 or delta_t.shape != (delta_i.shape[1],) or std.shape != (delta_i.shape[0],):
        raise ValueError(f"delta_i [C, D], delta_t [D], std [C] expected, got {list(delta_i.shape)}, "
                         f"{list(delta_t.shape)}, {list(std.shape)}")
    rel = (delta_i.float() @ delta_t.float().to(delta_i.device)).cpu()  # [C]
    if covered is not None:
        rel = torch.where(covered.cpu(), rel, torch.zeros_like(rel))
    keep = rel.abs() >= beta
    if beta == 0:
        keep &= rel != 0
    peak = float(rel[keep].abs().max()) if bool(keep.any()) else 1.0
    ds = torch.where(keep, std.float().cpu() * rel / peak, torch.zeros_like(rel))
    order = torch.argsort(rel.abs(), descending=True)
    channels = tuple(int(i) for i in order if bool(keep[i]))
    return GlobalDirection(ds, rel, channels, float(beta))


def edit_flat(flat: torch.Tensor, direction: torch.Tensor, alphas: Sequence[float]) -> torch.Tensor:
    """``s + α·Δs`` for each α: ``flat`` ``[1, C]`` (or ``[C]``), direction ``[C]`` → ``[A, C]``.

    Channels where the direction is 0 stay bit-identical (``torch.where``, not ``s + 0``).
    """
    base = flat.reshape(1, -1)
    d = direction.to(base.device, base.dtype).reshape(1, -1)
    a = torch.tensor([float(v) for v in alphas], dtype=base.dtype, device=base.device).reshape(-1, 1)
    moved = base + a * d
    return torch.where(d != 0, moved, base.expand_as(moved))


def render_flat(G: Any, ws: torch.Tensor, flat: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
    """Render flat styles ``[N, C]`` (full layout) with ``ws`` ``[N or 1, num_ws, w_dim]`` → ``[N, 3, H, W]``."""
    layers = style_layers(G)
    if ws.shape[0] != flat.shape[0]:
        ws = ws.expand(flat.shape[0], -1, -1)
    return G.synthesis_styles(ws, unflatten_styles(flat.to(G.w_avg.device), layers), noise_mode=noise_mode)


def s_layout(layers: Sequence[StyleLayer]) -> str:
    """The layout of an S direction file: ``[[layer name, width], …]`` as one JSON string."""
    return json.dumps([[l.name, l.width] for l in layers])


def save_s_direction(path: str | Path, G: Any, direction: torch.Tensor, **extra: Any) -> Path:
    """Write an S direction ``[C]`` (full layout of ``G``) atomically as ``.npz`` (``s_direction``, ``s_layout``,
    and ``extra`` arrays such as ``relevance``)."""
    from clipstyle.io.files import atomic_save_npz

    layers = style_layers(G)
    if direction.shape != (sum(l.width for l in layers),):
        raise UsageError(f"an S direction of this network is [{sum(l.width for l in layers)}], got {list(direction.shape)}")
    return atomic_save_npz(path, **{S_KEY: direction.detach().cpu().float().numpy(), LAYOUT_KEY: s_layout(layers)},
                           **extra)


def is_s_direction(path: str | Path) -> bool:
    """Whether ``path`` is an ``.npz`` holding an S direction (read without pickles; False for anything else)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return S_KEY in data.files
    except Exception:  # noqa: BLE001 - not an npz: not ours
        return False


def load_s_direction(path: str | Path, G: Any) -> torch.Tensor:
    """Read an S direction written by :func:`save_s_direction` → float32 ``[C]`` for ``G``.

    Raises:
        SDirectionError: not an S direction, a layout that does not fit ``G`` (what it has and what G needs, in one
            line), non-finite values.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arr = np.asarray(data[S_KEY], dtype=np.float32)
            layout = str(data[LAYOUT_KEY]) if LAYOUT_KEY in data.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise SDirectionError(f"{path} is not an S direction file ({type(exc).__name__}: {exc})") from None
    layers = style_layers(G)
    need = sum(l.width for l in layers)
    if arr.shape != (need,) or (layout is not None and layout != s_layout(layers)):
        raise SDirectionError(f"{path}: the S direction has {arr.size} channels in another layout; this {G.kind} "
                              f"network has {need} S channels ({len(layers)} layers)")
    if not np.isfinite(arr).all():
        raise SDirectionError(f"{path} contains NaN or infinite values")
    return torch.from_numpy(arr.copy())


class StyleLatent(torch.nn.Module):
    """An optimizable StyleSpace code in the shape of a :class:`~clipstyle.latents.Latent` for the one loop.

    ``param`` ``[N, C]`` is the offset from the start styles on the chosen channels (``mask``), so
    ``styles() = s0 + param·mask``; ``ws()`` returns the fixed start ``ws`` (StyleGAN3's input transform still
    reads it). Wrap the generator with :meth:`generator` so that the loop's ``G.synthesis(ws)`` renders
    ``styles()``::

        latent = StyleLatent(G, ws0)
        result = run(latent.generator(), latent, loss, schedule)   # clipstyle.optimize.loop.run
        best = latent.best_styles                                  # [N, C], the lowest-loss styles

    Raises:
        ValueError: ``ws`` not ``[N, num_ws, w_dim]``, a channel out of range.
    """

    def __init__(self, G: Any, ws: torch.Tensor, channels: Sequence[int] | None = None) -> None:
        super().__init__()
        G.check_ws(ws)
        self.layers = style_layers(G)
        with torch.no_grad():
            s0 = flatten_styles(G.styles(ws.detach()), self.layers).float()
        mask = torch.zeros(1, s0.shape[1], device=s0.device)
        if channels is None:
            mask[:] = 1
        else:
            idx = [int(c) for c in channels]
            if any(not 0 <= c < s0.shape[1] for c in idx):
                raise UsageError(f"S channels must be in 0-{s0.shape[1] - 1}")
            mask[:, idx] = 1
        self.register_buffer("start_ws", ws.detach().float().clone())
        self.register_buffer("start", s0.clone())
        self.register_buffer("mask", mask)
        self.param = torch.nn.Parameter(torch.zeros_like(s0))
        self._G = [G]  # not a submodule: the latent's state is only its own tensors
        self.best_styles = s0.detach().cpu().clone()
        self._best_loss = float("inf")

    def styles(self) -> torch.Tensor:
        """``s0 + param·mask`` ``[N, C]`` (with gradient)."""
        return self.start + self.param * self.mask

    def ws(self) -> torch.Tensor:
        """The start ``ws`` ``[N, num_ws, w_dim]`` (what the loop records; the styles carry the edit)."""
        return self.start_ws

    def constrain_(self) -> None:
        """No constraint."""

    def generator(self) -> _StyleSynthesisG:
        """A generator stand-in whose ``synthesis(ws)`` renders :meth:`styles`, and a loop callback that keeps the
        lowest-loss styles in :attr:`best_styles`."""
        return _StyleSynthesisG(self._G[0], self)

    def record(self, loss: float, styles: torch.Tensor) -> None:
        """Keep ``styles`` when ``loss`` is the lowest seen (called by the stand-in's callback)."""
        if loss < self._best_loss:
            self._best_loss, self.best_styles = loss, styles.detach().cpu().clone()


class _StyleSynthesisG(torch.nn.Module):
    """``G`` for :func:`clipstyle.optimize.loop.run` with ``synthesis`` rendering a :class:`StyleLatent`'s styles."""

    def __init__(self, G: Any, latent: StyleLatent) -> None:
        super().__init__()
        self.G, self.latent = G, [latent]
        self.last: torch.Tensor | None = None

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        lat = self.latent[0]
        s = lat.styles()
        self.last = s
        return self.G.synthesis_styles(ws, unflatten_styles(s.to(ws.dtype) if s.dtype != ws.dtype else s, lat.layers),
                                       noise_mode=noise_mode)

    def callback(self, info: Any, images: torch.Tensor) -> None:
        """Loop callback: the loss of ``info`` belongs to the styles rendered last (before the update)."""
        if self.last is not None:
            self.latent[0].record(info.loss, self.last)
