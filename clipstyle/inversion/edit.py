"""Editing a projected photo with a text prompt.

The objective is StyleCLIP's latent optimization (Patashnik et al. 2021, §4):
``λ_dir · L_dir + λ_L2 · ‖w − w_s‖² + λ_keep · L_keep`` over the free styleblocks of w, where

* ``L_dir`` is the directional CLIP loss of StyleGAN-NADA (Gal et al. 2021, eq. 3):
  ``1 − cos(E_I(x) − E_I(x_s), E_T(target) − E_T(source))`` (the change of the image must follow the change
  of the text, e.g. "a face" → "a smiling face");
* ``‖w − w_s‖²`` keeps the latent near the projection w_s (StyleCLIP's L2 term);
* ``L_keep = 1 − cos(E_I(x), E_I(x_s))`` keeps the look of the projection (a CLIP stand-in for StyleCLIP's
  ArcFace identity loss).

Rows outside ``free_rows`` stay bit-identical to w_s. Each piece (loss terms, latent, synthesis) is built
by a small function so commands can add terms (recipes), row mixing or blended generators:

* **mixing** (``edit(..., mix={row: w})``): the mixed rows are replaced in the start first, so w_s, x_s
  (the "before" image the directional and keep terms compare with) and the L2 anchor all include them,
  and they stay bit-identical to the other latent during the whole edit;
* **blending**: pass the blended generator as ``G``. A photo is projected into the base network A (the
  blend's mapping and ``w_avg`` are A's, so the latent means the same in both) and then edited and
  rendered in the blend; the projection's noise maps are used for every layer of the blend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from clipstyle.inversion.noise import SynthesisWithNoise
from clipstyle.latents import Latent
from clipstyle.optimize.loop import Callback, OptimizeResult, Schedule, run
from clipstyle.errors import UsageError

__all__ = ["EditConfig", "EditResult", "edit", "edit_latent", "edit_synthesis", "edit_terms", "render"]


@dataclass(frozen=True)
class EditConfig:
    """Settings of :func:`edit`.

    Attributes:
        source_text: the text describing the unedited photo (direction start).
        steps, lr, rampup, rampdown: Adam schedule (:class:`clipstyle.optimize.loop.Schedule`).
        directional: weight of the directional CLIP loss.
        l2: weight of ``‖w − w_s‖²`` (summed over rows and dims; StyleCLIP uses 0.008 for 18×512).
        keep: weight of the CLIP keep-the-look term.
        free_rows: styleblocks that may change (None = all).
        save_every: keep a frame every this many steps (0 = none).
        seed: seeds the cutouts.
        precision: the networks' precision; a reduced mode or ``auto`` runs only where the precision check
            measured it safe on ``G`` (:mod:`clipstyle.optimize.precision_verdicts`).
    """

    source_text: str = "a face"
    steps: int = 100
    lr: float = 0.1
    rampup: float = 0.05
    rampdown: float = 0.25
    directional: float = 1.0
    l2: float = 0.008
    keep: float = 0.3
    free_rows: tuple[int, ...] | None = None
    save_every: int = 0
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("directional", "l2", "keep"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.source_text.strip():
            raise UsageError("the source text is empty: describe the unedited photo, e.g. 'a face'")


@dataclass(frozen=True)
class EditResult:
    """Outcome of :func:`edit` (CPU float32): ``ws [N, num_ws, w_dim]`` (the edit), ``start_ws`` (w_s, with
    the mixed rows in), ``before``/``after`` images ``[N, C, H, W]`` in ~[-1, 1], ``free_rows`` (mixed rows
    excluded), and the optimization ``run``."""

    ws: Tensor
    start_ws: Tensor
    before: Tensor
    after: Tensor
    free_rows: tuple[int, ...]
    run: OptimizeResult


def edit_synthesis(G: Any, noise: Mapping[str, Tensor] | None = None) -> SynthesisWithNoise:
    """The generator as the edit sees it: ``G.synthesis`` with the projection's noise maps (if any)."""
    return SynthesisWithNoise(G, {k: v.to(G.w_avg.device) for k, v in (noise or {}).items()})


@torch.no_grad()
def render(synth: Any, ws: Tensor) -> Tensor:
    """Images ``[N, C, H, W]`` for ``ws`` (const noise), detached."""
    return synth.synthesis(ws, noise_mode="const").detach()


def edit_latent(start_ws: Tensor, free_rows: Sequence[int] | None = None, **kwargs: Any) -> Latent:
    """The optimized latent: W+ from ``start_ws`` with only ``free_rows`` free (extra kwargs go to
    :class:`~clipstyle.latents.Latent`, e.g. ``mix``, ``trust_radius``)."""
    return Latent(start_ws, free_rows=free_rows, space="w+", **kwargs)


def edit_terms(guide: Any, prompt: str, before: Tensor, start_ws: Tensor, config: EditConfig, cutouts: Any, *,
               generator: torch.Generator | None = None) -> list[tuple[Any, float]]:
    """The weighted loss terms ``[(term, weight), …]`` for :class:`~clipstyle.guidance.CombinedLoss`:
    directional (``"directional"``), latent L2 (``"l2"``), keep (``"keep"``); zero weights are dropped.

    Raises:
        GuidanceError: an empty prompt, or a prompt whose embedding equals the source text's.
    """
    from clipstyle.guidance import (
        DirectionalLoss,
        GuidanceError,
        KeepIdentity,
        LatentL2,
    )

    if not prompt.strip():
        raise GuidanceError("the prompt is empty: say what the edit should do, e.g. \"a smiling face\"")
    terms: list[tuple[Any, float]] = []
    if config.directional > 0:
        terms.append((DirectionalLoss(guide, config.source_text, prompt, before, cutouts, generator=generator),
                      config.directional))
    if config.l2 > 0:
        terms.append((LatentL2(start_ws), config.l2))
    if config.keep > 0:
        terms.append((KeepIdentity(guide, before, cutouts, generator=generator), config.keep))
    return terms


def edit(G: Any, start_ws: Tensor, prompt: str, guide: Any, cutouts: Any, config: EditConfig = EditConfig(), *,
         noise: Mapping[str, Tensor] | None = None, mix: Mapping[int, Tensor] | None = None,
         extra_terms: Sequence[tuple[Any, float]] = (), callbacks: Sequence[Callback] = (),
         stop: Any = None) -> EditResult:
    """Edit the image of ``start_ws`` towards ``prompt``.

    Args:
        G: the generator (not modified); a blended generator edits and renders in the blend.
        start_ws: ``[N, num_ws, w_dim]`` float32 (a projection or any latent); w_s is this with the ``mix``
            rows replaced.
        prompt: the target text (the direction goes from ``config.source_text`` to it).
        guide: a :class:`~clipstyle.guidance.CLIPGuide`; cutouts: a :class:`~clipstyle.guidance.Cutouts`.
        config: see :class:`EditConfig`.
        noise: StyleGAN2 noise maps of the projection (``{name: [res, res]}``), used for every synthesis.
        mix: ``{row: [w_dim] or [N, w_dim] tensor}`` rows fixed, bit-exactly, to another latent (style
            mixing; :func:`clipstyle.latents.constraints.parse_mix`); a mixed row is never free.
        extra_terms: more ``(term, weight)`` pairs added to the loss.
        callbacks: per-step callbacks (see :func:`clipstyle.optimize.loop.run`).
        stop: polled before each step; True ends the edit keeping the best latent.

    Returns:
        :class:`EditResult`; rows outside ``config.free_rows`` of ``ws`` equal w_s (``EditResult.start_ws``)
        bit for bit, so mixed rows equal ``mix``.

    Raises:
        GuidanceError: empty prompt, no loss term with a non-zero weight, same source and target text.
        latents.BlockSpecError / ValueError: bad rows or shapes, every free row mixed.
    """
    from clipstyle.guidance import CombinedLoss

    device = G.w_avg.device
    G.check_ws(start_ws)
    latent = edit_latent(start_ws.detach().to(device, torch.float32), config.free_rows,
                         mix=dict(mix) if mix else None).to(device)
    start_ws = latent.fixed.detach().clone()  # w_s: the start with the mixed rows in (bit-exact)
    synth = edit_synthesis(G, noise)
    before = render(synth, start_ws)
    gen = torch.Generator().manual_seed(int(config.seed))  # cutout geometry (drawn on the CPU)
    loss = CombinedLoss([*edit_terms(guide, prompt, before, start_ws, config, cutouts, generator=gen), *extra_terms])
    schedule = Schedule(lr=config.lr, steps=config.steps, rampup=config.rampup, rampdown=config.rampdown)
    from clipstyle.optimize.precision_verdicts import verified_precision

    precision = verified_precision(G, config.precision, device)
    result = run(synth, latent, loss, schedule, noise_mode="const", save_every=config.save_every,
                 callbacks=callbacks, stop=stop, precision=precision)
    after = result.extra.get("final_image")
    if after is None:
        after = render(synth, result.ws.to(device))
    return EditResult(ws=result.ws.cpu(), start_ws=start_ws.cpu(), before=before.cpu(), after=after.cpu(),
                      free_rows=latent.free_rows, run=result)
