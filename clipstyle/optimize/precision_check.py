"""Is a reduced precision safe for this network? Measured against float32, never assumed.

For a mode (``tf32``, ``bf16``, ``fp16``) and a generator, three measurements against ``fp32``
(issue 22; the thresholds are :class:`Limits`):

1. **Image error** — the same latents synthesised in both modes; max and RMS of the difference, in image
   units (the range is [-1, 1], so 2/255 ≈ 0.0078 is one 8-bit level). NVIDIA's StyleGAN2-ADA/3 run their
   highest-resolution layers in fp16 with ``conv_clamp=256`` (Karras et al. 2020, "Training Generative
   Adversarial Networks with Limited Data", App. D) — the image error of that design is the guide for the
   limit: a few 8-bit levels RMS.
2. **Gradient cosine** — the gradient of one step's loss with respect to ``ws`` in both modes; their
   cosine similarity must be ≥ 0.99 (the direction the optimizer moves is the same).
3. **Short run** — the loop (:func:`clipstyle.optimize.loop.run`) for ``steps`` steps from the same start in
   both modes; the loss of each run's final latent, both evaluated in float32: the reduced-precision run
   may end at most 2 % above fp32's. (One-sided: trajectories of a non-convex optimization part ways
   after a few steps whatever the precision — a 1e-3 change of the start moved the fp32 final loss of
   a 20-step run on the StyleGAN3-T fixture by 19 % — so ending *lower* is no sign of harm; ending higher is what a user would see.)

**Training the generator** (pivotal tuning, ``clipstyle adapt``) is measured on its own
(``trains_weights=True``): the gradient is the one w.r.t. the synthesis weights of a copy, and the short
runs train those weights at fixed latents — float32 master weights and Adam moments, the forward in the
reduced mode — with the same limits. A mode safe for a latent is not assumed safe for weights: the weight
gradients are sums over every pixel of a layer, a different rounding budget from a latent's.

The loss is the caller's (e.g. the CLIP loss of the workflow), or, by default, the MSE to a target image
the network itself makes from another latent (a projection: a loss whose optimum is known to exist).

A mode that fails is refused for that network with :class:`PrecisionRefusedError` naming the failed
measurement; :func:`choose_precision` turns ``auto`` into the fastest candidate that passes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from clipstyle.latents import Latent, start_ws
from clipstyle.optimize.loop import Schedule, run, train
from clipstyle.optimize.precision import (
    PrecisionError,
    auto_candidates,
    autocast_context,
    model_precision,
    resolve_precision,
)

__all__ = ["Limits", "PrecisionCheck", "PrecisionRefusedError", "check_precision", "choose_precision",
           "require_safe"]

LossFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class PrecisionRefusedError(PrecisionError):
    """A precision that failed its safety check for a network; the message names the measurement (exit 2)."""


@dataclass(frozen=True)
class Limits:
    """Thresholds of the safety check. ``image_rms``/``image_max``: image units ([-1, 1] range);
    ``grad_cosine``: minimum cosine of the fp32 and reduced-precision gradients; ``loss_rel``: maximum
    relative difference of the short runs' final losses."""

    image_rms: float = 0.03
    image_max: float = 0.5
    grad_cosine: float = 0.99
    loss_rel: float = 0.02


@dataclass(frozen=True)
class PrecisionCheck:
    """The measurements of one mode against fp32 on one network (see the module docstring).

    ``image_max_error``/``image_rms_error``: image units; ``grad_cosine``: in [-1, 1];
    ``loss_fp32``/``loss_reduced``: the final losses of the two short runs (both evaluated in float32);
    ``loss_rel_diff``: ``(loss_reduced - loss_fp32) / max(|loss_fp32|, 1e-12)`` (negative: the reduced
    run ended lower); ``ok``: all within
    ``limits``; ``reasons``: one line per failed measurement.
    """

    precision: str
    device: str
    image_max_error: float
    image_rms_error: float
    grad_cosine: float
    loss_fp32: float
    loss_reduced: float
    loss_rel_diff: float
    steps: int
    limits: Limits
    ok: bool
    reasons: tuple[str, ...]
    trains_weights: bool = False

    def as_dict(self) -> dict:
        """Plain data for ``run.json`` / benchmark files."""
        return {"precision": self.precision, "device": self.device, "image_max_error": self.image_max_error,
                "image_rms_error": self.image_rms_error, "grad_cosine": self.grad_cosine,
                "loss_fp32": self.loss_fp32, "loss_reduced": self.loss_reduced,
                "loss_rel_diff": self.loss_rel_diff, "steps": self.steps, "ok": self.ok,
                "reasons": list(self.reasons), "trains_weights": self.trains_weights}


def _projection_loss(G: torch.nn.Module, device: torch.device, seed: int, batch: int) -> LossFn:
    """MSE to images the network makes from other seeds (computed in float32)."""
    with torch.no_grad(), autocast_context("fp32", device):
        target_ws, _ = start_ws(G, seed=seed + 1000, truncation_psi=0.7, batch=batch)
        target = G.synthesis(target_ws, noise_mode="const").float()  # [N, C, H, W]

    def loss_fn(images: torch.Tensor, ws: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mse = (images.float() - target).square().mean()
        return mse, {"mse": mse.detach()}

    return loss_fn


def _forward_loss(G, ws: torch.Tensor, loss_fn: LossFn, precision: str, device: torch.device):
    with autocast_context(precision, device):
        images = G.synthesis(ws, noise_mode="const")
    images = images.float()
    with model_precision(precision, device):
        loss, _ = loss_fn(images, ws)
    return images, loss.float()


def _trainable_copy(G: torch.nn.Module) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """A copy of ``G`` whose synthesis weights train (the mapping network stays frozen, as in PTI and NADA)."""
    with torch.random.fork_rng(devices=[]):
        G1 = copy.deepcopy(G)
    G1.requires_grad_(False)
    G1.synthesis.requires_grad_(True)
    return G1, [p for p in G1.synthesis.parameters() if p.requires_grad]


def _weights_gradient(G1: torch.nn.Module, params: list[torch.nn.Parameter], ws: torch.Tensor, loss_fn: LossFn,
                      mode: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The image and the flattened float64 gradient of the loss w.r.t. ``params``, the synthesis weights of
    the trainable copy ``G1`` (:func:`_trainable_copy`; a gradient leaves them as they are)."""
    img, loss = _forward_loss(G1, ws, loss_fn, mode, device)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])
    return img.detach().double(), flat.double()


def _weights_run(G: torch.nn.Module, ws: torch.Tensor, loss_fn: LossFn, mode: str, device: torch.device,
                 steps: int, lr: float) -> float:
    """Train a copy's synthesis weights for ``steps`` Adam steps in ``mode``; the final loss, in float32."""
    G1, params = _trainable_copy(G)

    def forward(step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        images, loss = _forward_loss(G1, ws, loss_fn, mode, device)
        return images, loss, {}

    train(params, forward, Schedule(lr=lr, steps=steps, rampup=0.0, rampdown=0.0), keep=lambda: None,
          precision=mode, device=device)
    with torch.no_grad():
        _, loss = _forward_loss(G1, ws, loss_fn, "fp32", device)
    return float(loss)


def check_precision(G: torch.nn.Module, precision: str, device: torch.device | str = "cpu", *,
                    loss_fn: LossFn | None = None, steps: int = 100, lr: float | None = None, batch: int = 2,
                    seed: int = 0, limits: Limits = Limits(), trains_weights: bool = False) -> PrecisionCheck:
    """Measure ``precision`` against fp32 on generator ``G`` (see the module docstring).

    Args:
        G: a generator (``mapping``/``synthesis``, frozen here) on ``device``.
        precision: ``tf32`` | ``bf16`` | ``fp16`` (``fp32`` measures zero differences; ``auto`` is resolved).
        device: where ``G`` lives.
        loss_fn: ``(images [N,C,H,W] float32 in [-1,1], ws [N,num_ws,w_dim]) → (scalar, terms)``; the
            default is the projection MSE of :func:`_projection_loss`.
        steps: length of the short runs (the issue's check: 100; tests use fewer).
        lr: learning rate of the short runs (default 0.05 for a latent, the loop's schedule; 1e-3 constant
            for weights).
        batch: latents per measurement (seeds ``seed … seed + batch - 1``, truncation 0.7).
        seed: first seed.
        limits: thresholds.
        trains_weights: measure what training the generator needs (pivotal tuning, ``adapt``): the gradient
            is taken w.r.t. the synthesis weights of a copy of ``G`` (all of them, flattened), and the short
            runs train those weights (float32 master weights and Adam moments, the forward in ``precision``)
            at fixed latents, instead of a latent through frozen weights. The image error is the same.

    Returns:
        :class:`PrecisionCheck`.

    Raises:
        PrecisionError: a mode the device cannot run (:func:`~clipstyle.optimize.precision.resolve_precision`).
    """
    device = torch.device(device)
    mode = resolve_precision(precision, device)
    G.requires_grad_(False)
    ws0, _ = start_ws(G, seed=seed, truncation_psi=0.7, batch=batch)  # [N, num_ws, w_dim]
    ws0 = ws0.to(device)
    loss_fn = loss_fn or _projection_loss(G, device, seed, batch)

    grads, images = [], []
    trainable = _trainable_copy(G) if trains_weights else None  # one copy serves both modes' gradients
    for m in ("fp32", mode):
        if trainable is not None:
            img, grad = _weights_gradient(*trainable, ws0, loss_fn, m, device)
        else:
            ws = ws0.clone().requires_grad_(True)
            img, loss = _forward_loss(G, ws, loss_fn, m, device)
            (grad,) = torch.autograd.grad(loss, ws)
        grads.append(grad.flatten().double())
        images.append(img.detach().double())
    diff = images[1] - images[0]
    image_max = float(diff.abs().max())
    image_rms = float(diff.square().mean().sqrt())
    cosine = float(torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0))

    finals = []
    for m in ("fp32", mode):
        if trains_weights:
            finals.append(_weights_run(G, ws0, loss_fn, m, device, steps, 1e-3 if lr is None else lr))
            continue
        result = run(G, Latent(ws0), loss_fn, Schedule(lr=0.05 if lr is None else lr, steps=steps), precision=m)
        with torch.no_grad():
            _, loss = _forward_loss(G, result.ws.to(device), loss_fn, "fp32", device)
        finals.append(float(loss))
    rel = (finals[1] - finals[0]) / max(abs(finals[0]), 1e-12)

    reasons = []
    if not (image_rms <= limits.image_rms and image_max <= limits.image_max):
        reasons.append(f"image error vs fp32: RMS {image_rms:.4f}, max {image_max:.4f} (limits "
                       f"{limits.image_rms}, {limits.image_max})")
    if not cosine >= limits.grad_cosine:
        reasons.append(f"{'weight-' if trains_weights else ''}gradient cosine vs fp32 {cosine:.4f} < "
                       f"{limits.grad_cosine}")
    if not (math.isfinite(finals[1]) and rel <= limits.loss_rel):
        run_kind = "training run" if trains_weights else "run"
        reasons.append(f"final loss of a {steps}-step {run_kind} {finals[1]:.5g} vs fp32 {finals[0]:.5g} "
                       f"({rel:+.1%}, more than {limits.loss_rel:.0%} above)")
    return PrecisionCheck(precision=mode, device=str(device), image_max_error=image_max,
                          image_rms_error=image_rms, grad_cosine=cosine, loss_fp32=finals[0],
                          loss_reduced=finals[1], loss_rel_diff=rel, steps=steps, limits=limits,
                          ok=not reasons, reasons=tuple(reasons), trains_weights=trains_weights)


def require_safe(check: PrecisionCheck, network: str = "this network") -> None:
    """Raise :class:`PrecisionRefusedError` (one line, the reasons) when ``check`` failed."""
    if not check.ok:
        raise PrecisionRefusedError(f"--precision {check.precision} is refused for {network}: "
                                    + "; ".join(check.reasons) + "; use --precision fp32")


def choose_precision(G: torch.nn.Module, precision: str, device: torch.device | str = "cpu", *,
                     network: str = "this network", **check_kwargs) -> tuple[str, tuple[PrecisionCheck, ...]]:
    """The precision to run for ``precision`` on ``G``, measured.

    ``auto``: the first of :func:`~clipstyle.optimize.precision.auto_candidates` that passes its check
    (``fp32`` needs none). An explicit reduced mode: checked, refused when it fails. ``fp32``: as is.

    Returns:
        ``(mode, the checks made)``.

    Raises:
        PrecisionRefusedError: an explicit mode failed its check (the message names the measurement).
        PrecisionError: unknown mode, or one the device cannot run.
    """
    device = torch.device(device)
    candidates = auto_candidates(device) if str(precision).strip().lower() == "auto" else (
        resolve_precision(precision, device),)
    checks = []
    for mode in candidates:
        if mode == "fp32":
            return mode, tuple(checks)
        check = check_precision(G, mode, device, **check_kwargs)
        checks.append(check)
        if check.ok:
            return mode, tuple(checks)
        if len(candidates) == 1:
            require_safe(check, network)
    return "fp32", tuple(checks)
