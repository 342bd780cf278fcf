"""Which synthesis layers a generator adaptation trains: the layers each ``ws`` row feeds, and NADA's adaptive
choice of rows (Gal et al. 2022, "StyleGAN-NADA: CLIP-Guided Domain Adaptation of Image Generators", Sec. 4.2).

A *layer* is a synthesis module with its own style transform (its ``affine``): StyleGAN2's ``b64.conv0``,
StyleGAN3's ``L3_52_1024``, StyleGAN1's ``b16.conv1`` … The ``ws`` row a layer reads is found by running the
synthesis once on a latent whose rows all differ and recording what each ``affine`` receives, so the map holds
for every family without per-family tables. ToRGB layers (and the learned constant input, which reads no row)
are never candidates unless asked for; the mapping network is never one.

Adaptive selection (Sec. 4.2): starting from the step's latents ``w`` (copied to every row, W+), a few steps of
plain gradient descent on a *global* CLIP loss towards the target (``1 − cos(E_I(G(w)), target)``) move some
rows more than others; the ``k`` rows with the largest mean change ``mean_n ‖w'_{n,i} − w_{n,i}‖`` name the layers
trained in that iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from clipstyle.errors import UsageError
from clipstyle.optimize.precision import model_synthesis

__all__ = ["LayerMap", "LayerSpecError", "layer_map", "parse_layers", "select_rows", "trainable_params"]


class LayerSpecError(UsageError):
    """A ``--layers`` value that names no layer of this network (a usage error)."""


@dataclass(frozen=True)
class LayerMap:
    """Synthesis layers of a generator by the ``ws`` row they read.

    Attributes:
        rows: ``rows[i]`` = names (relative to ``G.synthesis``) of the layers row ``i`` feeds, toRGB excluded
            unless the map was built with ``torgb=True``; ``len == num_ws``.
        torgb: names of the toRGB layers (always listed, whether candidates or not).
    """

    rows: tuple[tuple[str, ...], ...]
    torgb: tuple[str, ...]

    def layers_of(self, rows: Sequence[int]) -> list[str]:
        """Names of the layers the given rows feed, in row order, without repeats."""
        out: list[str] = []
        for i in rows:
            out += [n for n in self.rows[i] if n not in out]
        return out


def _is_torgb(name: str, module: nn.Module) -> bool:
    return "torgb" in name.lower() or bool(getattr(getattr(module, "cfg", None), "is_torgb", False))


@torch.no_grad()
def layer_map(G: nn.Module, *, torgb: bool = False) -> LayerMap:
    """Map each ``ws`` row to the synthesis layers it feeds (see the module doc).

    Args:
        G: a StyleGAN1/2/3 generator of clipstyle (``G.synthesis``, ``G.num_ws``, ``G.w_dim``).
        torgb: also list toRGB layers as candidates.

    Returns:
        :class:`LayerMap`.

    Raises:
        UsageError: the synthesis network has no modules with a style transform (``affine``): not a family
            adaptation can train.
    """
    affines = {name: m for name, m in G.synthesis.named_modules() if name.endswith("affine")}
    if not affines:
        raise UsageError(f"{type(G).__name__} has no styled synthesis layers; adapt trains StyleGAN1/2/3 networks")
    seen: dict[str, Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0].detach()))
             for name, m in affines.items()]
    device = next(G.synthesis.parameters()).device
    gen = torch.Generator().manual_seed(0)
    ws = torch.randn([1, G.num_ws, G.w_dim], generator=gen).to(device)  # every row distinct
    try:
        G.synthesis(ws, noise_mode="const")
    finally:
        for h in hooks:
            h.remove()
    rows: list[list[str]] = [[] for _ in range(G.num_ws)]
    torgbs: list[str] = []
    modules = dict(G.synthesis.named_modules())
    for name, got in seen.items():
        layer = name.removesuffix(".affine")
        if _is_torgb(layer, modules.get(layer, G.synthesis)):
            torgbs.append(layer)
            if not torgb:
                continue
        diff = (ws[0].float() - got.reshape(-1, G.w_dim)[0].float().to(ws.device)).abs().amax(dim=1)  # [num_ws]
        row = int(diff.argmin())
        if float(diff[row]) <= 1e-5:
            rows[row].append(layer)
    return LayerMap(rows=tuple(tuple(r) for r in rows), torgb=tuple(torgbs))


def parse_layers(spec: str, num_ws: int, groups: Sequence[str] | None = None) -> str | tuple[int, ...]:
    """``--layers``: ``"auto"`` (adaptive, per iteration), ``"all"`` (every row) or rows/styleblocks
    (``0-3,8``, ``coarse``…; see :func:`clipstyle.latents.parse_blocks`) → ``"auto"`` or a tuple of rows.

    Raises:
        LayerSpecError: an empty spec. BlockSpecError (a usage error): malformed rows or rows outside
            ``0 … num_ws−1``.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        return "auto"
    if not text:
        raise LayerSpecError("--layers is empty: use auto, all, or rows such as 0-3,8")
    from clipstyle.latents import parse_blocks

    return tuple(parse_blocks(text, num_ws, groups))


def trainable_params(G: nn.Module, names: Sequence[str]) -> list[nn.Parameter]:
    """The parameters of the named synthesis layers (affine included), without repeats."""
    modules = dict(G.synthesis.named_modules())
    out: list[nn.Parameter] = []
    ids: set[int] = set()
    for n in names:
        for p in modules[n].parameters():
            if id(p) not in ids:
                ids.add(id(p))
                out.append(p)
    return out


def select_rows(G: nn.Module, ws: Tensor, global_loss: Callable[[Tensor], Tensor], k: int, *, steps: int = 1,
                lr: float = 0.01, candidates: Sequence[int] | None = None) -> tuple[list[int], Tensor]:
    """NADA's adaptive layer selection (Gal et al. 2022, Sec. 4.2): the ``k`` rows a few steps of latent
    optimization towards the target move most.

    Args:
        G: the generator being trained (its weights get no gradient here).
        ws: float32 ``[N, num_ws, w_dim]``, the iteration's latents.
        global_loss: ``images [N, C, H, W] → scalar``, e.g. the CLIP distance to the target text.
        k: how many rows to pick (clipped to the candidates).
        steps: gradient-descent steps on ``ws`` (plain SGD, so a row's change follows its gradient's size).
        lr: their step size.
        candidates: rows that may be picked (default: all).

    Returns:
        ``(rows, change)``: the picked rows (ascending) and the mean change of every row, float32 ``[num_ws]``.

    Raises:
        ValueError: ``k < 1`` or ``steps < 1``.
    """
    if k < 1 or steps < 1:
        raise ValueError(f"k and steps must be >= 1, got {k}, {steps}")
    flags = [p.requires_grad for p in G.parameters()]
    G.requires_grad_(False)
    try:
        start = ws.detach().float()
        w = start.clone().requires_grad_(True)
        for _ in range(steps):
            loss = global_loss(model_synthesis(G, w))  # in the training step's precision
            (grad,) = torch.autograd.grad(loss, w)
            with torch.no_grad():
                w -= lr * grad
        change = (w.detach() - start).norm(dim=2).mean(0)  # [num_ws]
    finally:
        for p, f in zip(G.parameters(), flags):
            p.requires_grad_(f)
    allowed = list(range(ws.shape[1])) if candidates is None else list(candidates)
    order = sorted(allowed, key=lambda i: -float(change[i]))
    return sorted(order[: min(k, len(order))]), change.cpu()
