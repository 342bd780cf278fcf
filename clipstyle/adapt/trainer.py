"""Text-driven generator adaptation (Gal et al. 2022, "StyleGAN-NADA: CLIP-Guided Domain Adaptation of Image
Generators", arXiv:2108.00946): fine-tune a copy of a generator so that, for every latent, the CLIP-space change
from the frozen generator's image to the copy's follows the change from a source text to a target text (Eq. 3–4,
:mod:`clipstyle.adapt.losses`). Each iteration samples ``batch`` latents, picks the layers to train (NADA's
adaptive selection, Sec. 4.2, :mod:`clipstyle.adapt.layers`, or a fixed set), turns gradients on for those layers
only, and takes one Adam step on the one loop (:func:`clipstyle.optimize.loop.train`). The mapping network, the
toRGB layers and the constant input stay frozen (bit-identical), so every latent of the base network keeps its
meaning in the adapted one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clipstyle.adapt.layers import LayerMap, layer_map, select_rows, trainable_params
from clipstyle.adapt.losses import AdaptLoss
from clipstyle.errors import UsageError
from clipstyle.optimize.loop import (
    Callback,
    Schedule,
    StepInfo,
    TrainResult,
    to_uint8_frames,
    train,
)
from clipstyle.optimize.precision import model_synthesis

__all__ = ["AdaptConfig", "AdaptResult", "FamilyError", "adapt_generator", "check_trainable"]

#: Adam's betas in NADA (those of StyleGAN2's own generator optimizer).
NADA_BETAS = (0.0, 0.99)


class FamilyError(UsageError):
    """A network that adaptation cannot train (conditional, or without styled synthesis layers)."""


@dataclass(frozen=True)
class AdaptConfig:
    """Settings of :func:`adapt_generator` (defaults: NADA's, Gal et al. 2022, Sec. 5 and its README).

    Attributes:
        steps: iterations (NADA: 300 for most domains). batch: latents per iteration (2).
        lr: Adam's learning rate, constant (0.002; betas 0, 0.99).
        rows: ``"auto"`` (adaptive selection every iteration) or the fixed ``ws`` rows whose layers train.
        k: rows picked by the adaptive selection (None: two thirds of the rows).
        select_steps, select_lr: latent-optimization steps (plain gradient descent) and step size of the selection.
        torgb: train the toRGB layers too (frozen by default).
        truncation: ψ of the latents sampled for training (1 = none).
        seed: seeds the training latents and the cutouts (explicit ``torch.Generator``).
        preview_every: render the preview latents every this many steps (0 = only before and after).
        precision: the networks' precision in training (:data:`~clipstyle.optimize.precision.PRECISIONS`): the
            frozen and the trained generator's forwards, the layer selection and CLIP run in it; the trained
            weights (the master copy), Adam's moments and the loss stay float32; previews render in float32.
            A reduced mode or ``auto`` runs only where the training check measured it safe on the base
            (:func:`~clipstyle.optimize.precision_verdicts.verified_precision`, ``trains_weights=True``).
    """

    steps: int = 300
    batch: int = 2
    lr: float = 0.002
    rows: str | tuple[int, ...] = "auto"
    k: int | None = None
    select_steps: int = 1
    select_lr: float = 0.01
    torgb: bool = False
    truncation: float = 1.0
    seed: int = 0
    preview_every: int = 10
    precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "select_steps"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "select_lr"):
            if not float(getattr(self, name)) > 0:
                raise UsageError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.k is not None and self.k < 1:
            raise UsageError(f"k must be >= 1, got {self.k}")
        if self.preview_every < 0:
            raise UsageError(f"preview_every must be >= 0, got {self.preview_every}")
        if self.rows != "auto" and not (isinstance(self.rows, tuple) and self.rows):
            raise UsageError(f"rows must be 'auto' or a non-empty tuple of rows, got {self.rows!r}")


@dataclass(frozen=True)
class AdaptResult:
    """Outcome of :func:`adapt_generator`.

    Attributes:
        G: the adapted generator (a copy of the base; eval mode, frozen, on the base's device). When stopped
            early (Ctrl-C, ``stop()``, a NaN loss) it holds the weights of the lowest-loss step so far.
        run: the loop's :class:`~clipstyle.optimize.loop.TrainResult` (history, best step, timings).
        rows_trained: the ``ws`` rows whose layers trained, per finished step.
        frames: uint8 ``[M, H, W, C]`` renders of the preview latents through the trained copy: before training,
            every ``preview_every`` steps, and at the end; ``frame_steps`` their step numbers.
        before: uint8 ``[M, H, W, C]`` renders of the preview latents through the base.
        peak_memory: peak CUDA memory in bytes during training (None on CPU).
        layers: ``candidates`` (rows that may train), ``k`` (rows per step), ``layers`` (their layer names),
            ``torgb_frozen``, ``seconds``.
    """

    G: Any
    run: TrainResult
    rows_trained: tuple[tuple[int, ...], ...]
    frames: tuple[np.ndarray, ...]
    frame_steps: tuple[int, ...]
    before: np.ndarray
    peak_memory: int | None = None
    layers: dict[str, Any] = field(default_factory=dict)


def check_trainable(G: Any) -> None:
    """Refuse networks adaptation cannot train.

    Raises:
        FamilyError: a conditional network (``c_dim > 0``), or one without styled synthesis layers.
    """
    if getattr(G, "c_dim", 0):
        raise FamilyError("adapt trains unconditional networks; this one is conditional (c_dim "
                          f"{G.c_dim})")
    if not hasattr(G, "synthesis") or not hasattr(G, "mapping"):
        raise FamilyError(f"adapt cannot train a {type(G).__name__}: it has no mapping/synthesis networks")


@torch.no_grad()
def _render(G: Any, ws: Tensor) -> np.ndarray:
    return to_uint8_frames(G.synthesis(ws, noise_mode="const").float())


def adapt_generator(G: Any, loss: AdaptLoss, config: AdaptConfig = AdaptConfig(), *, preview: Tensor | None = None,
                    callbacks: Sequence[Callback] = (), stop: Callable[[], bool] | None = None) -> AdaptResult:
    """Fine-tune a copy of ``G``'s synthesis layers with the directional CLIP loss (module doc).

    Args:
        G: the base generator (StyleGAN1/2/3, unconditional; not modified).
        loss: the critics (:class:`~clipstyle.adapt.losses.AdaptLoss`) on G's device.
        config: :class:`AdaptConfig`.
        preview: float32 ``[M, num_ws, w_dim]`` latents rendered before, during and after training (default: none).
        callbacks: ``callback(StepInfo, images)`` after every step (images: the step's training batch).
        stop: polled before every step; True ends training keeping the best weights so far.

    Returns:
        :class:`AdaptResult`.

    Raises:
        FamilyError: see :func:`check_trainable`. LayerSpecError/BlockSpecError: rows outside the network.
        PrecisionRefusedError: an explicit reduced ``config.precision`` failed the training check on ``G``.
    """
    from clipstyle.optimize.precision_verdicts import verified_precision

    check_trainable(G)
    device = G.w_avg.device
    G0 = G.eval().requires_grad_(False)
    precision = verified_precision(G0, config.precision, device, trains_weights=True)
    with torch.random.fork_rng(devices=[]):
        G1 = copy.deepcopy(G0)
    G1.requires_grad_(False)
    lmap: LayerMap = layer_map(G1, torgb=config.torgb)
    if config.rows != "auto" and max(config.rows) >= G1.num_ws:
        raise UsageError(f"rows {list(config.rows)} outside this network's 0-{G1.num_ws - 1}")
    candidates = list(range(G1.num_ws)) if config.rows == "auto" else list(config.rows)
    candidates = [i for i in candidates if lmap.rows[i]]  # rows that feed a trainable layer
    if not candidates:
        raise UsageError("the chosen rows feed only toRGB layers; pick other --layers or allow toRGB training")
    k = config.k if config.k is not None else max(1, round(2 * G1.num_ws / 3))
    params = trainable_params(G1, lmap.layers_of(candidates))
    names = {id(p): n for n, p in G1.named_parameters()}
    kept_names = [names[id(p)] for p in params]
    gen = torch.Generator().manual_seed(int(config.seed))
    rows_trained: list[tuple[int, ...]] = []
    before = _render(G0, preview.to(device)) if preview is not None else np.zeros((0, 1, 1, 3), np.uint8)
    frames, frame_steps = ([before], [0]) if preview is not None else ([], [])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def forward(step: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        z = torch.randn([config.batch, G0.z_dim], generator=gen).to(device)
        with torch.no_grad():
            ws = G0.mapping(z, None, truncation_psi=config.truncation)  # [B, num_ws, w_dim]
            x0 = model_synthesis(G0, ws)
        if config.rows == "auto" and k < len(candidates):
            rows, _ = select_rows(G1, ws, loss.global_loss, k, steps=config.select_steps, lr=config.select_lr,
                                  candidates=candidates)
        else:
            rows = candidates
        rows_trained.append(tuple(rows))
        chosen = {id(p) for p in trainable_params(G1, lmap.layers_of(rows))}
        for p in params:  # gradients only for the layers trained this step
            p.requires_grad_(id(p) in chosen)
        x = model_synthesis(G1, ws)  # [B, C, H, W] float32
        value, terms = loss(x, x0)
        return x, value, terms

    def keep() -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in zip(kept_names, params)}

    def previews(info: StepInfo, images: Tensor) -> None:
        if preview is not None and config.preview_every and (info.step + 1) % config.preview_every == 0 \
                and info.step + 1 < info.steps:
            frames.append(_render(G1, preview.to(device)))
            frame_steps.append(info.step + 1)

    t0 = time.perf_counter()
    result = train(params, forward, Schedule(lr=config.lr, steps=config.steps, rampup=0.0, rampdown=0.0),
                   keep=keep, initial=keep(), callbacks=[previews, *callbacks], betas=NADA_BETAS, stop=stop,
                   precision=precision, device=device)
    del rows_trained[result.steps_done:]  # a step that ended in NaN picked rows but did not train
    if result.interrupted:
        with torch.no_grad():
            for p, n in zip(params, kept_names):
                p.copy_(result.best[n])
    G1.eval().requires_grad_(False)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    if preview is not None:
        frames.append(_render(G1, preview.to(device)))
        frame_steps.append(result.steps_done)
    info = {"candidates": candidates, "k": k if config.rows == "auto" else len(candidates),
            "layers": lmap.layers_of(candidates), "torgb_frozen": not config.torgb,
            "seconds": time.perf_counter() - t0}
    return AdaptResult(G=G1, run=result, rows_trained=tuple(rows_trained), frames=tuple(frames),
                       frame_steps=tuple(frame_steps), before=before, peak_memory=peak, layers=info)
