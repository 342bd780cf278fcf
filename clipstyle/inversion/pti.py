"""Pivotal tuning (Roich et al. 2022, "Pivotal Tuning for Latent-based Editing of Real Images", §3).

Given a pivot latent ``w_p`` (a W projection of the photo x) the *synthesis* weights θ are fine-tuned so
that the pivot reproduces the photo, while images of other latents stay as they were:

    L_pt = L_LPIPS(G(w_p; θ), x) + λ_L2 · L_L2(G(w_p; θ), x)                                   (eq. 1)
    w_r  = w_p + α · (w_z − w_p) / ‖w_z − w_p‖,   w_z = f(z), z ~ N(0, I)                       (eq. 2)
    L_R  = L_LPIPS(G(w_r; θ), G(w_r; θ₀)) + λ_R^L2 · L_L2(G(w_r; θ), G(w_r; θ₀))                (eq. 3)
    min_θ  L_pt + λ_R · L_R                                                                    (eq. 4)

with the paper's λ_L2 = 1, λ_R = 0.1, λ_R^L2 = 0.1, α = 30, Adam lr 3e-4 and 350 steps. The mapping network is
untouched (so every latent still means the same). α is capped at ‖w_z − w_p‖ so w_r never passes w_z (tiny
networks have a W far narrower than 30). Without a perceptual model the LPIPS terms are dropped and the L2
terms carry the fit. The pivot stays fixed; the optimization is the one loop of :mod:`clipstyle.optimize.loop`
with the synthesis weights as its parameters (the latent it carries is restored after every step).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from clipstyle.inversion.lpips import downsample_for_lpips
from clipstyle.inversion.noise import SynthesisWithNoise
from clipstyle.inversion.project import psnr
from clipstyle.latents import Latent
from clipstyle.optimize.loop import Callback, OptimizeResult, Schedule, run
from clipstyle.optimize.precision import model_synthesis
from clipstyle.optimize.precision_verdicts import verified_precision

__all__ = ["TuneConfig", "TuneResult", "locality", "tune"]


@dataclass(frozen=True)
class TuneConfig:
    """Settings of :func:`tune` (defaults: the paper's).

    Attributes:
        steps, lr: Adam steps and learning rate (constant; 350, 3e-4).
        l2: λ_L2, the pixel term's weight beside LPIPS (without LPIPS the pixel term has weight 1).
        locality: λ_R (0 turns the regularizer off); locality_l2: λ_R^L2; alpha: α; locality_batch: random
            latents per step.
        seed: seeds the z of the regularizer and of the locality figure.
        save_every: keep a frame every this many steps (0 = none).
        precision: the networks' precision while tuning (:data:`~clipstyle.optimize.precision.PRECISIONS`); a
            reduced mode or ``auto`` runs only where the training check measured it safe on ``G``
            (:func:`~clipstyle.optimize.precision_verdicts.verified_precision`, ``trains_weights=True``). The
            tuned weights stay float32 (the master copy autocast casts from), as do Adam's moments, the loss,
            the regularizer's targets and the metrics.
    """

    steps: int = 350
    lr: float = 3e-4
    l2: float = 1.0
    locality: float = 0.1
    locality_l2: float = 0.1
    alpha: float = 30.0
    locality_batch: int = 1
    seed: int = 0
    save_every: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"tune steps must be >= 1, got {self.steps}")
        for name in ("lr", "alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("l2", "locality", "locality_l2"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class TuneResult:
    """Outcome of :func:`tune` (tensors float32 CPU).

    Attributes:
        G: the tuned generator (a copy; eval, frozen, on the input's device).
        pivot_image, image: ``[N, C, H, W]`` the pivot through the original / tuned weights.
        metrics: ``psnr_pivot``, ``psnr_tuned`` (dB), ``lpips_pivot``/``lpips_tuned`` (with a perceptual
            model), and the locality figures of :func:`locality`.
        run: the loop's :class:`~clipstyle.optimize.loop.OptimizeResult` (history, frames, timings; ``precision``:
            the mode the tuning ran in).
    """

    G: Any
    pivot_image: Tensor
    image: Tensor
    metrics: dict[str, float]
    run: OptimizeResult


class _Tuned:
    """What the loop optimizes through: the tuned copy's synthesis with the pivot's noise maps. The loop
    freezes "G" before it starts; here that must not freeze the weights being tuned."""

    def __init__(self, G: Any, noise: Mapping[str, Tensor] | None) -> None:
        self.inner = SynthesisWithNoise(G, noise)
        self.G = G

    def requires_grad_(self, flag: bool = True) -> _Tuned:
        return self

    def synthesis(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        return self.inner.synthesis(ws, noise_mode=noise_mode)




def _step_towards(G: Any, pivot: Tensor, z: Tensor, alpha: float) -> Tensor:
    """w_r = w_p + min(α, ‖w_z − w_p‖)·unit(w_z − w_p) for each z (eq. 2); ``[K, num_ws, w_dim]``."""
    w_z = G.mapping(z, None if G.c_dim == 0 else torch.zeros([z.shape[0], G.c_dim], device=z.device))
    w_p = pivot[:1].mean(dim=1, keepdim=True)                      # [1, 1, w_dim]
    d = w_z[:, :1] - w_p                                           # [K, 1, w_dim]
    n = d.norm(dim=2, keepdim=True).clamp_min(1e-12)
    return pivot[:1] + d / n * torch.minimum(n, torch.full_like(n, alpha))


@torch.no_grad()
def locality(G0: Any, G1: Any, pivot: Tensor, samples: int = 8, seed: int = 1234, alpha: float = 30.0,
             perceptual: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, float]:
    """How far tuning moved images of other latents: PSNR (dB) and mean |Δ| between ``G0`` and ``G1`` on
    ``samples`` seeded random w (``locality_psnr_random``, ``locality_mae_random``) and on the w_r of eq. 2
    near the pivot (``locality_psnr_near``); ``locality_lpips_*`` with a perceptual model."""
    dev = G0.w_avg.device
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn([samples, G0.z_dim], generator=gen).to(dev)
    c = None if G0.c_dim == 0 else torch.zeros([samples, G0.c_dim], device=dev)
    out: dict[str, float] = {}
    for name, ws in (("random", G0.mapping(z, c)), ("near", _step_towards(G0, pivot.to(dev), z, alpha))):
        a, b = G0.synthesis(ws, noise_mode="const"), G1.synthesis(ws, noise_mode="const")
        out[f"locality_psnr_{name}"] = psnr(a, b)
        if name == "random":
            out["locality_mae_random"] = float((a - b).abs().mean())
        if perceptual is not None and a.shape[1] == 3:
            out[f"locality_lpips_{name}"] = float(perceptual(downsample_for_lpips(a), downsample_for_lpips(b)).mean())
    return out


def tune(G: Any, pivot: Tensor, target: Tensor, config: TuneConfig = TuneConfig(), *,
         noise: Mapping[str, Tensor] | None = None, perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
         callbacks: Sequence[Callback] = (), stop: Callable[[], bool] | None = None) -> TuneResult:
    """Fine-tune a copy of ``G``'s synthesis network so that ``pivot`` reproduces ``target`` (eq. 4).

    Args:
        G: the generator (not modified).
        pivot: ``[1, num_ws, w_dim]`` float32, the pivot (usually a W projection).
        target: ``[1, C, R, R]`` in [-1, 1] (R = ``G.img_resolution``).
        config: see :class:`TuneConfig`.
        noise: the projection's noise maps (``{name: [res, res]}``), used for the pivot's images.
        perceptual: LPIPS-like distance ``(x, y) → [N]`` (images ≤ 256² are given), or None.
        callbacks, stop: as in :func:`clipstyle.optimize.loop.run` (stop/Ctrl-C keeps the weights so far).

    Returns:
        :class:`TuneResult`.

    Raises:
        ValueError: mis-shaped pivot or target.
        FloatingPointError: the loss became NaN/inf.
        PrecisionRefusedError: an explicit reduced ``config.precision`` failed the training check on ``G``.
    """
    device = G.w_avg.device
    G.check_ws(pivot)
    if pivot.shape[0] != 1:
        raise ValueError(f"pivotal tuning takes one pivot [1, num_ws, w_dim], got {list(pivot.shape)}")
    r = G.img_resolution
    if target.ndim != 4 or tuple(target.shape[2:]) != (r, r) or target.shape[0] != 1:
        raise ValueError(f"the target must be [1, C, {r}, {r}], got {list(target.shape)}")
    pivot = pivot.detach().to(device, torch.float32)
    target = target.detach().to(device, torch.float32)
    noise = {k: v.to(device) for k, v in (noise or {}).items()}
    with torch.random.fork_rng(devices=[]):
        G1 = copy.deepcopy(G)
    G1.synthesis.requires_grad_(True)
    params = [p for p in G1.synthesis.parameters() if p.requires_grad]
    wrapped = _Tuned(G1, noise)
    with torch.no_grad():
        pivot_image = SynthesisWithNoise(G, noise).synthesis(pivot, noise_mode="const")
    target_small = downsample_for_lpips(target) if perceptual is not None else None
    gen = torch.Generator().manual_seed(int(config.seed))
    l2_weight = config.l2 if perceptual is not None else 1.0

    def distance(a: Tensor, b: Tensor, b_small: Tensor | None, l2: float) -> tuple[Tensor, Tensor, Tensor | None]:
        mse = (a - b).square().mean()
        if perceptual is None:
            return l2 * mse, mse, None
        small = downsample_for_lpips(a)
        if small.shape[1] == 1:
            small, b_small = small.expand(-1, 3, -1, -1), b_small.expand(-1, 3, -1, -1)
        d = perceptual(small, b_small).mean()
        return d + l2 * mse, mse, d

    def loss_fn(images: Tensor, ws: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total, mse, lp = distance(images, target, target_small, l2_weight)
        terms = {"mse": mse.detach()}
        if lp is not None:
            terms["lpips"] = lp.detach()
        if config.locality > 0:
            z = torch.randn([config.locality_batch, G.z_dim], generator=gen).to(device)
            with torch.no_grad():
                w_r = _step_towards(G, pivot, z, config.alpha)
                ref = G.synthesis(w_r, noise_mode="const")
            moved = model_synthesis(G1, w_r)  # in the tuning precision (the loop's autocast ends at the image)
            reg, _, _ = distance(moved, ref, downsample_for_lpips(ref) if perceptual is not None else None,
                                 config.locality_l2 if perceptual is not None else 1.0)
            total = total + config.locality * reg
            terms["locality"] = reg.detach()
        return total, terms

    latent = Latent(pivot.clone(), space="w+").to(device)
    start = latent.param.detach().clone()

    def hold_pivot() -> None:
        with torch.no_grad():
            latent.param.copy_(start)

    schedule = Schedule(lr=config.lr, steps=config.steps, rampup=0.0, rampdown=0.0)
    precision = verified_precision(G, config.precision, device, trains_weights=True)
    result = run(wrapped, latent, loss_fn, schedule, noise_mode="const", save_every=config.save_every,
                 callbacks=callbacks, extra_params=params, after_step=hold_pivot, stop=stop, precision=precision)
    G1.eval().requires_grad_(False)
    with torch.no_grad():
        image = SynthesisWithNoise(G1, noise).synthesis(pivot, noise_mode="const")
    metrics = {"psnr_pivot": psnr(pivot_image, target), "psnr_tuned": psnr(image, target),
               "mse_pivot": float((pivot_image - target).square().mean()),
               "mse_tuned": float((image - target).square().mean())}
    if perceptual is not None:
        def lp(x: Tensor) -> float:
            s = downsample_for_lpips(x)
            t = target_small
            if s.shape[1] == 1:
                s, t = s.expand(-1, 3, -1, -1), t.expand(-1, 3, -1, -1)
            return float(perceptual(s, t).mean())
        with torch.no_grad():
            metrics.update({"lpips_pivot": lp(pivot_image), "lpips_tuned": lp(image)})
    metrics.update(locality(G, G1, pivot, seed=config.seed + 1234, alpha=config.alpha, perceptual=perceptual))
    return TuneResult(G=G1, pivot_image=pivot_image.cpu(), image=image.cpu(), metrics=metrics, run=result)
