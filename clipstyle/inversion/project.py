"""Projection of a photo into a generator's latent space (W or W+).

The method is the StyleGAN2 projector (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", §5 and Appendix D), with W+ as in Image2StyleGAN (Abdal et al. 2019):

* start from the mean ``μ_w`` of ``w_avg_samples`` mapped latents (seeded); ``σ_w`` =
  ``sqrt(mean_k ‖w_k − μ_w‖²)`` measures how far latents spread;
* minimise ``λ_p·LPIPS(G(w), x) + λ_mse·mean((G(w) − x)²) + λ_n·Σ_{i,j} L_{i,j}`` over w (one shared vector
  in W, one per row in W+) and the per-layer noise maps n_i (StyleGAN2 only), where ``L_{i,j}`` is the
  multi-scale noise autocorrelation penalty (:func:`~clipstyle.inversion.noise.noise_regularization`) and
  each n_i is renormalised to zero mean / unit variance after every step;
* during the first ``noise_ramp_length`` of the steps, Gaussian noise of std
  ``σ_w · initial_noise_factor · max(0, 1 − t / noise_ramp_length)²`` (t = step/steps) is added to w
  before synthesis — it makes the optimizer explore before it settles;
* Adam (β = 0.9, 0.999) with the lr ramped up linearly over the first 5% of the steps and down with a
  cosine over the last 25% (:class:`clipstyle.optimize.loop.Schedule`); 1000 steps, peak lr 0.1.

Constraints: ``mix`` fixes rows of ``ws`` to another latent (style mixing, bit-exact; those rows get no
w-noise either), and a blended generator (:func:`~clipstyle.generator.blend.blend_generators`) projects
into the blend like any other network.

LPIPS compares images downsampled to at most 256² (as the paper does for 1024² faces).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from clipstyle.errors import UsageError
from clipstyle.inversion.lpips import downsample_for_lpips
from clipstyle.inversion.noise import (
    SynthesisWithNoise,
    noise_buffers,
    noise_regularization,
    normalize_noise_,
)
from clipstyle.latents import Latent
from clipstyle.optimize.loop import Callback, OptimizeResult, Schedule, StepInfo, run

__all__ = ["ProjectConfig", "ProjectionResult", "prepare_target", "project", "psnr", "w_statistics"]


@dataclass(frozen=True)
class ProjectConfig:
    """Settings of :func:`project` (defaults: the StyleGAN2 projector).

    Attributes:
        steps: optimization steps (paper: 1000).
        lr: peak Adam learning rate (paper: 0.1), ramped up over ``rampup`` and down over ``rampdown``.
        space: ``"w"`` (one w for all rows, NVIDIA's projector) or ``"w+"`` (one per row, Image2StyleGAN).
        perceptual: weight of the perceptual term (used only when :func:`project` gets a model).
        mse: weight of the pixel MSE (images in [-1, 1]).
        noise_reg: weight of the noise regularization (paper: 1e5).
        optimize_noise: optimize StyleGAN2's noise maps (ignored for networks without noise).
        initial_noise_factor: w-noise std at step 0 in units of σ_w (paper: 0.05).
        noise_ramp_length: fraction of the steps over which the w-noise falls to 0 (paper: 0.75).
        rampup, rampdown: lr schedule fractions (paper: 0.05, 0.25).
        w_avg_samples: number of z mapped to estimate μ_w and σ_w (paper: 10,000).
        seed: seeds the z samples and the w-noise.
        lpips_max_size: LPIPS sees images area-downsampled to at most this side.
        save_every: keep a projection frame every this many steps (0 = none).
        betas: Adam's (β₁, β₂).
        precision: the networks' precision (:mod:`clipstyle.optimize.precision`); a reduced mode or ``auto``
            runs only where the precision check measured it safe on ``G``
            (:mod:`clipstyle.optimize.precision_verdicts`).
        w_warmup: W+ only: this fraction of the steps is first spent in W (NVIDIA's schedule, w-noise
            included), and the remaining steps refine every row from that W solution without w-noise.
            Starting W+ from μ_w directly gets stuck far from the target on many networks (27 dB after 300
            steps on a random one, where W then W+ reaches > 38 dB); 0 = W+ from the start.
        noise_lr: the noise maps' step relative to w's (NVIDIA: 1). At 1 the maps absorb the early,
            large w errors and are then pinned by the regularizer; 0.01 keeps them close to what fits.
        wplus_lr: W+ only: peak lr of the W+ phase (None = ``lr``); per-row optimization needs a smaller
            step than the shared w.
    """

    steps: int = 1000
    lr: float = 0.1
    space: str = "w"
    precision: str = "fp32"
    perceptual: float = 1.0
    mse: float = 0.0
    noise_reg: float = 1e5
    optimize_noise: bool = True
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    rampup: float = 0.05
    rampdown: float = 0.25
    w_avg_samples: int = 10_000
    seed: int = 0
    lpips_max_size: int = 256
    save_every: int = 0
    betas: tuple[float, float] = (0.9, 0.999)
    w_warmup: float = 0.5
    noise_lr: float = 0.01
    wplus_lr: float | None = 0.03

    def __post_init__(self) -> None:
        if self.space not in ("w", "w+"):
            raise UsageError(f"space must be 'w' or 'w+', got {self.space!r}")
        if self.steps < 1:
            raise UsageError(f"steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        for name in ("perceptual", "mse", "noise_reg", "initial_noise_factor"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.noise_ramp_length <= 1:
            raise UsageError(f"noise_ramp_length must be in (0, 1], got {self.noise_ramp_length}")
        if not self.noise_lr > 0:
            raise UsageError(f"noise_lr must be > 0, got {self.noise_lr}")
        if not 0 <= self.w_warmup < 1:
            raise UsageError(f"w_warmup must be in [0, 1), got {self.w_warmup}")
        if self.w_avg_samples < 2:
            raise UsageError(f"w_avg_samples must be >= 2, got {self.w_avg_samples}")

    def w_noise_std(self, step: int, w_std: float) -> float:
        """Std of the noise added to w at ``step``: ``σ_w · factor · max(0, 1 − t/ramp)²``."""
        t = step / self.steps
        return w_std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp_length) ** 2


@dataclass(frozen=True)
class ProjectionResult:
    """Outcome of :func:`project` (all tensors float32 on the CPU).

    Attributes:
        ws: ``[N, num_ws, w_dim]`` the projection (in W space every row not fixed by ``mix`` is equal).
        noise: the optimized noise maps ``{name relative to G.synthesis: [res, res]}`` (``{}`` when none
            were optimized); synthesise with them through
            :class:`~clipstyle.inversion.noise.SynthesisWithNoise` to reproduce ``image``.
        image: ``[N, C, R, R]`` the final projection, in ~[-1, 1] (no w-noise).
        target: ``[N, C, R, R]`` what was projected, in [-1, 1].
        metrics: ``mse`` (mean squared error of the raw images, [-1, 1] units), ``psnr`` (dB, peak-to-peak 2,
            both images clamped to [-1, 1] as when saved), ``lpips`` (when a perceptual model was used).
        w_mean: ``[w_dim]`` the start μ_w; w_std: σ_w.
        run: the :class:`~clipstyle.optimize.loop.OptimizeResult` (history, frames, timings, interruption).
    """

    ws: Tensor
    noise: dict[str, Tensor]
    image: Tensor
    target: Tensor
    metrics: dict[str, float]
    w_mean: Tensor
    w_std: float
    run: OptimizeResult
    config: ProjectConfig = field(default_factory=ProjectConfig)


@torch.no_grad()
def w_statistics(G: Any, num_samples: int = 10_000, seed: int = 0, c: Tensor | None = None,
                 batch: int = 1000) -> tuple[Tensor, float]:
    """Mean and spread of w over ``num_samples`` seeded z ~ N(0, I) (with class ``c`` for conditional networks).

    Returns:
        ``(μ_w [w_dim] float32 on G's device, σ_w = sqrt(mean_k ‖w_k − μ_w‖²) as a float)``.
    """
    device = G.w_avg.device
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn([num_samples, G.z_dim], generator=gen, dtype=torch.float32)
    if c is None:
        c = torch.zeros([1, G.c_dim])
    ws = []
    for chunk in z.split(batch):
        cc = c.to(device, torch.float32).expand(chunk.shape[0], -1) if c.shape[0] == 1 else c.to(device)
        ws.append(G.mapping(chunk.to(device), cc, truncation_psi=1.0)[:, 0].to(torch.float64))
    w = torch.cat(ws)
    mean = w.mean(0)
    std = float((w - mean).square().sum(1).mean().sqrt())
    return mean.to(torch.float32), std


def psnr(images: Tensor, target: Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2): ``10·log10(4 / mse)`` after clamping both to [-1, 1]."""
    mse = float((images.detach().clamp(-1, 1).double() - target.detach().clamp(-1, 1).double()).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def prepare_target(image: Tensor, G: Any) -> Tensor:
    """Fit an RGB tensor ``[N, 3, R, R]`` in [-1, 1] to the generator's channel count (1 → gray average).

    Raises:
        ValueError: wrong resolution or channel count.
    """
    r = G.img_resolution
    if image.ndim != 4 or tuple(image.shape[2:]) != (r, r):
        raise ValueError(f"the target must be [N, C, {r}, {r}] for this network, got {list(image.shape)}")
    channels = G.img_channels
    if image.shape[1] == channels:
        return image
    if channels == 1 and image.shape[1] == 3:
        return image.mean(dim=1, keepdim=True)
    if channels == 3 and image.shape[1] == 1:
        return image.expand(-1, 3, -1, -1)
    raise ValueError(f"the target has {image.shape[1]} channels, the network makes {channels}")


def _project_once(G: Any, target: Tensor, config: ProjectConfig = ProjectConfig(), *,
                  perceptual: Callable[[Tensor, Tensor], Tensor] | None = None, c: Tensor | None = None,
                  mix: dict[int, Tensor] | None = None, callbacks: Sequence[Callback] = (),
                  init: Tensor | None = None, noise_init: dict[str, Tensor] | None = None,
                  stop: Callable[[], bool] | None = None) -> ProjectionResult:
    """One projection run (no W warm-up); arguments, result and errors as :func:`project`."""
    device = G.w_avg.device
    target = prepare_target(target, G).detach().to(device, torch.float32)
    n = target.shape[0]
    use_perceptual = perceptual is not None and config.perceptual > 0
    if not use_perceptual and config.mse <= 0:
        raise UsageError("nothing to project by: use a perceptual model or give mse > 0")
    if G.c_dim > 0 and c is None:
        raise UsageError(f"this network is conditional: give a class label c [1, {G.c_dim}]")

    w_mean, w_std = w_statistics(G, config.w_avg_samples, config.seed, c)
    if init is None:
        start = w_mean[None, None].repeat(n, G.num_ws, 1)
    else:
        init = init.detach().to(device, torch.float32)
        if init.ndim != 3 or init.shape[0] not in (1, n) or tuple(init.shape[1:]) != (G.num_ws, G.w_dim):
            raise ValueError(f"init must be [1 or {n}, {G.num_ws}, {G.w_dim}], got {list(init.shape)}")
        start = init.expand(n, -1, -1).clone()
        if config.space == "w":
            start = start.mean(dim=1, keepdim=True).expand(-1, G.num_ws, -1).clone()
    latent = Latent(start, space=config.space, mix=mix).to(device)
    row_mask = latent.mask[None, :, None].to(torch.float32) if mix else None  # w-noise on projected rows only

    noise: dict[str, Tensor] = {}
    if config.optimize_noise:
        noise = {name: (noise_init[name] if noise_init and name in noise_init else buf).detach().clone()
                 .to(device, torch.float32).requires_grad_(True) for name, buf in noise_buffers(G).items()}
        normalize_noise_(noise.values())
    # The maps are optimized as raw / k with k = noise_lr (Adam's step is ~lr in the raw parameter, so the
    # maps move k times slower than w); `scaled()` gives the maps themselves.
    k = float(config.noise_lr)
    raw = {name: (v.detach() / k).requires_grad_(True) for name, v in noise.items()}

    def scaled() -> dict[str, Tensor]:
        return {name: v * k for name, v in raw.items()}

    gen = torch.Generator(device=device).manual_seed(int(config.seed) + 1)
    state = {"step": 0}

    def w_noise(ws: Tensor) -> Tensor | None:
        std = config.w_noise_std(state["step"], w_std)
        if std <= 0:
            return None
        shape = [ws.shape[0], 1 if config.space == "w" else ws.shape[1], ws.shape[2]]
        delta = torch.randn(shape, generator=gen, device=ws.device, dtype=ws.dtype) * std
        return delta if row_mask is None else delta * row_mask.to(ws)

    synth = _ScaledNoiseSynthesis(G, scaled, w_noise)
    target_small = downsample_for_lpips(target, config.lpips_max_size) if use_perceptual else None

    def loss_fn(images: Tensor, ws: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        terms: dict[str, Tensor] = {}
        total = images.new_zeros([])
        if use_perceptual:
            small = downsample_for_lpips(images, config.lpips_max_size)
            if small.shape[1] == 1:  # a grayscale network: LPIPS expects RGB
                small, tgt = small.expand(-1, 3, -1, -1), target_small.expand(-1, 3, -1, -1)
            else:
                tgt = target_small
            d = perceptual(small, tgt).mean()
            total = total + config.perceptual * d
            terms["lpips"] = d.detach()
        if config.mse > 0:
            m = (images - target).square().mean()
            total = total + config.mse * m
            terms["mse"] = m.detach()
        if noise and config.noise_reg > 0:
            r = noise_regularization(scaled().values())
            total = total + config.noise_reg * r
            terms["noise_reg"] = r.detach()
        return total, terms

    def after_step() -> None:
        state["step"] += 1
        with torch.no_grad():
            normalize_noise_(raw.values())
            for v in raw.values():
                v.div_(k)

    schedule = Schedule(lr=config.lr, steps=config.steps, rampup=config.rampup, rampdown=config.rampdown)
    result = run(synth, latent, loss_fn, schedule, noise_mode="const", save_every=config.save_every,
                 callbacks=callbacks, extra_params=list(raw.values()), after_step=after_step,
                 betas=tuple(config.betas), stop=stop, precision=config.precision)

    final_noise = {name: v.detach().clone() for name, v in scaled().items()}
    clean = SynthesisWithNoise(G, final_noise)
    with torch.no_grad():
        image = clean.synthesis(result.ws.to(device), noise_mode="const")
        metrics = {"mse": float((image - target).square().mean()), "psnr": psnr(image, target)}
        if use_perceptual:
            small = downsample_for_lpips(image, config.lpips_max_size)
            if small.shape[1] == 1:
                metrics["lpips"] = float(perceptual(small.expand(-1, 3, -1, -1),
                                                    target_small.expand(-1, 3, -1, -1)).mean())
            else:
                metrics["lpips"] = float(perceptual(small, target_small).mean())
    if result.frames:  # the loop's last frame may carry w-noise when interrupted: replace it
        from clipstyle.optimize.loop import to_uint8_frames

        result = replace(result, frames=result.frames[:-1] + (to_uint8_frames(image),))
    return ProjectionResult(ws=result.ws.cpu(), noise={k: v.cpu() for k, v in final_noise.items()},
                            image=image.cpu(), target=target.cpu(), metrics=metrics, w_mean=w_mean.cpu(),
                            w_std=w_std, run=result, config=config)


class _ScaledNoiseSynthesis(SynthesisWithNoise):
    """:class:`SynthesisWithNoise` whose maps are recomputed by ``maps()`` at every synthesis."""

    def __init__(self, G: Any, maps: Callable[[], dict[str, Tensor]], w_noise: Callable | None) -> None:
        super().__init__(G, maps(), w_noise)
        self.maps = maps

    def synthesis(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        self.noise = self.maps()
        return super().synthesis(ws, noise_mode)


def project(G: Any, target: Tensor, config: ProjectConfig = ProjectConfig(), *,
            perceptual: Callable[[Tensor, Tensor], Tensor] | None = None, c: Tensor | None = None,
            mix: dict[int, Tensor] | None = None, callbacks: Sequence[Callback] = (),
            init: Tensor | None = None, noise_init: dict[str, Tensor] | None = None,
            stop: Callable[[], bool] | None = None) -> ProjectionResult:
    """Find the latent (and noise) whose image matches ``target``.

    In W+ with ``config.w_warmup > 0`` (and no ``init``) the first ``w_warmup·steps`` steps project into W
    and the rest refine each row from there (lr ``wplus_lr``, no w-noise); callbacks see one run of
    ``steps`` steps and the history is one sequence.

    Args:
        G: a generator (StyleGAN2 or StyleGAN3; not modified — its noise buffers are copied).
        target: float ``[N, C, R, R]`` in [-1, 1], R = ``G.img_resolution`` (see :func:`prepare_target`).
        config: see :class:`ProjectConfig`.
        perceptual: a distance ``(x, y) → [N]``, e.g. :class:`~clipstyle.inversion.lpips.LPIPS`; ``None``
            turns the perceptual term off.
        c: class labels ``[1 or N, c_dim]`` for conditional networks (one-hot); used for the w statistics
            (the start is the class mean) — required when ``G.c_dim > 0``.
        mix: ``{row: [w_dim] tensor}`` rows fixed, bit-exactly, to another latent during the whole projection.
        callbacks: called after each step (see :func:`clipstyle.optimize.loop.run`).
        init: ``[N or 1, num_ws, w_dim]`` start latent instead of μ_w (an e4e encoding…); in W+ it is refined
            like the W+ phase (``wplus_lr``, no w-noise, no ramp-up), in W its rows are averaged first.
        noise_init: start noise maps ``{name: [res, res]}`` instead of the generator's buffers.
        stop: polled before each step; True ends the projection keeping the best latent.

    Returns:
        :class:`ProjectionResult` (mixed rows of ``ws`` equal ``mix`` bit for bit). Ctrl-C / ``stop`` ends
        early and keeps the best latent so far.

    Raises:
        ValueError: a target of the wrong shape, no loss term, a conditional network without ``c``, every
            row mixed, or a mis-shaped ``init``.
        FloatingPointError: the loss became NaN/inf.
    """
    from clipstyle.optimize.precision_verdicts import verified_precision

    # a reduced mode only where measured safe on G (measured once, cached): both phases run what was verified
    config = replace(config, precision=verified_precision(G, config.precision, G.w_avg.device))
    kw = dict(perceptual=perceptual, c=c, mix=mix, stop=stop)
    n1 = int(round(config.steps * config.w_warmup))
    if init is not None and config.space == "w+":  # refine a given W+ start (an encoding): the W+ phase only
        config = replace(config, lr=config.wplus_lr or config.lr, initial_noise_factor=0.0, rampup=0.0)
    if config.space != "w+" or init is not None or n1 < 1 or config.steps - n1 < 1:
        return _project_once(G, target, config, callbacks=callbacks, init=init, noise_init=noise_init, **kw)
    total = config.steps

    def shifted(offset: int) -> list[Callback]:
        def cb(info: StepInfo, images: Tensor) -> None:
            moved = replace(info, step=info.step + offset, steps=total, seconds=info.seconds + elapsed[0])
            for f in callbacks:
                f(moved, images)
        return [cb] if callbacks else []

    elapsed = [0.0]
    first = _project_once(G, target, replace(config, space="w", steps=n1), callbacks=shifted(0), init=None,
                          noise_init=noise_init, **kw)
    if first.run.interrupted:
        return replace(first, config=config)
    elapsed[0] = first.run.seconds
    second_cfg = replace(config, steps=total - n1, lr=config.wplus_lr or config.lr, initial_noise_factor=0.0,
                         rampup=0.0)
    second = _project_once(G, target, second_cfg, callbacks=shifted(n1), init=first.ws,
                           noise_init=first.noise or None, **kw)
    r1, r2 = first.run, second.run
    history = r1.history + tuple({**h, "step": h["step"] + n1} for h in r2.history)
    run_result = replace(r2, history=history, frames=r1.frames[:-1] + r2.frames,
                         frame_steps=r1.frame_steps[:-1] + tuple(s + n1 for s in r2.frame_steps),
                         seconds=r1.seconds + r2.seconds, steps_done=r1.steps_done + r2.steps_done,
                         best_step=r2.best_step + n1)
    return replace(second, run=run_result, w_mean=first.w_mean, w_std=first.w_std, config=config)
