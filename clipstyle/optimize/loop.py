"""The one optimization loop: Adam on a :class:`~clipstyle.latents.Latent` through a frozen generator
(:func:`run`), or on any tensors such as a generator's own weights (:func:`train`); both are :func:`_iterate`.

Every feature (text → image, photo editing, projection) is this loop with another start latent, loss
and constraint. The learning-rate schedule is the one of the projection literature (Karras et al.
2020, "Analyzing and Improving the Image Quality of StyleGAN", Appendix D): linear ramp-up over the
first ``rampup`` fraction of the steps, cosine ramp-down over the last ``rampdown`` fraction.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from clipstyle.errors import NonFiniteLossWarning, UsageError, interrupt_requested
from clipstyle.latents import Latent
from clipstyle.optimize.precision import PRECISIONS  # noqa: F401  (re-exported: callers import loop.PRECISIONS)
from clipstyle.optimize.precision import autocast_context, model_precision, resolve_precision

LossFn = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]
#: One step of :func:`train`: ``step → (images for callbacks, scalar loss, {name: value})``.
StepFn = Callable[[int], "tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]"]


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule: peak ``lr``, ``steps``, ramp-up and ramp-down fractions."""

    lr: float = 0.1
    steps: int = 300
    rampup: float = 0.05
    rampdown: float = 0.25

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): ``lr · min(1, t/rampup) · cosine_rampdown(t)``."""
        t = step / self.steps
        down = min(1.0, (1.0 - t) / self.rampdown) if self.rampdown > 0 else 1.0
        down = 0.5 - 0.5 * math.cos(down * math.pi)
        up = min(1.0, t / self.rampup) if self.rampup > 0 else 1.0
        return self.lr * down * up


@dataclass(frozen=True)
class StepInfo:
    """What a callback sees after each step. ``terms`` are unweighted loss values."""

    step: int
    steps: int
    lr: float
    loss: float
    terms: dict[str, float]
    seconds: float


class Callback(Protocol):
    def __call__(self, info: StepInfo, images: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class OptimizeResult:
    """Outcome of :func:`run`.

    ``ws``/``best_ws``: ``[N, num_ws, w_dim]`` float32 CPU (final and lowest-loss); ``history``: one dict
    per step (``step``, ``lr``, ``loss``, each term); ``frames``: uint8 ``[N, H, W, C]`` snapshots every
    ``save_every`` steps; ``interrupted``: stopped by Ctrl-C (then ``ws`` is the best so far);
    ``precision``: the mode the networks ran in (``fp32``/``tf32``/``bf16``/``fp16``, ``auto`` resolved).
    """

    ws: torch.Tensor
    best_ws: torch.Tensor
    best_loss: float
    best_step: int
    history: tuple[dict[str, float], ...]
    frames: tuple[np.ndarray, ...]
    frame_steps: tuple[int, ...]
    interrupted: bool
    seconds: float
    steps_done: int = 0
    extra: dict = field(default_factory=dict)
    precision: str = "fp32"


def to_uint8_frames(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] → ``[N, H, W, C]`` uint8: :func:`clipstyle.render.files.to_uint8` (the one
    conversion: ``floor(clamp(x·127.5 + 128, 0, 255))``, NaN → 0)."""
    from clipstyle.render.files import to_uint8

    return to_uint8(images)


def _autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the generator's precision context (kept for callers of the old name).

    Raises:
        PrecisionError: an unknown precision, or one the device cannot run
            (:func:`clipstyle.optimize.precision.resolve_precision`).
    """
    ran = resolve_precision(precision, device)
    return lambda: autocast_context(ran, device)


def _fp16_scaler(ran: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (None for the other modes). A modest initial scale: a latent's loss is O(1) and the
    default 2**16 overflows the first steps of a generator's backward, which GradScaler then skips (the run
    falls behind fp32's schedule)."""
    return torch.amp.GradScaler(device.type, init_scale=2.0 ** 10, growth_interval=100) if ran == "fp16" else None


def run(G: torch.nn.Module, latent: Latent, loss_fn: LossFn, schedule: Schedule, *, noise_mode: str = "const",
        save_every: int = 0, callbacks: Sequence[Callback] = (), betas: tuple[float, float] = (0.9, 0.999),
        extra_params: Sequence[torch.nn.Parameter] = (), after_step: Callable[[], None] | None = None,
        precision: str = "fp32", stop: Callable[[], bool] | None = None) -> OptimizeResult:
    """Optimize ``latent`` so that ``loss_fn(G.synthesis(latent.ws()), ws)`` falls.

    Args:
        G: generator (its weights are frozen here: ``requires_grad_(False)``).
        latent: the constrained latent (on G's device).
        loss_fn: ``(images [N,C,H,W] in [-1,1], ws [N,num_ws,w_dim]) → (scalar loss, {name: value})``.
        schedule: lr/steps/ramps.
        noise_mode: passed to ``G.synthesis``.
        save_every: keep a frame every this many steps (0 = none); the last frame is always the result.
        callbacks: called after every step with a :class:`StepInfo` and the step's images.
        extra_params: more tensors to optimize with the same Adam (e.g. noise buffers in projection).
        after_step: called after each optimizer step (e.g. to renormalize noise buffers).
        precision: one of :data:`~clipstyle.optimize.precision.PRECISIONS` (default ``fp32``): the
            generator's synthesis runs in it, and so do the critics inside ``loss_fn`` that use
            :func:`~clipstyle.optimize.precision.model_autocast` (CLIP's image tower); the latent, Adam's
            state and the loss arithmetic stay float32; ``fp16`` scales the loss (``GradScaler``); the
            final image is rendered in float32. ``auto`` is resolved for the latent's device
            (:func:`~clipstyle.optimize.precision.resolve_precision`); the result's ``precision`` says
            what ran.
        stop: polled before every step; ``True`` ends the loop exactly as Ctrl-C does (best result kept,
            ``interrupted``): the UI's Stop button.

    Returns:
        :class:`OptimizeResult`. Ctrl-C (``KeyboardInterrupt``, or an earlier one of the same CLI command:
        :func:`clipstyle.errors.interrupt_requested`) ends the loop early and returns the best result so far
        with ``interrupted=True``; so does ``stop()`` returning True. A NaN/inf loss does the same, with ``extra["stop_reason"]`` naming the
        cause (:func:`nonfinite_cause`) and a :class:`~clipstyle.errors.NonFiniteLossWarning` (the CLI turns
        it into an exit-1 error line after the command saved the best result).
    """
    G.requires_grad_(False)
    device = latent.param.device
    ran = resolve_precision(precision, device)  # PrecisionError (a UsageError) before any work
    opt = torch.optim.Adam([latent.param, *extra_params], lr=schedule.lr, betas=betas)
    scaler = _fp16_scaler(ran, device)
    current: dict[str, torch.Tensor] = {}

    def forward(step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        ws = current["ws"] = latent.ws()
        with autocast_context(ran, device):
            images = G.synthesis(ws, noise_mode=noise_mode)
        images = images.float()
        with model_precision(ran, device):  # the critics' forwards; the loss arithmetic stays float32
            loss, terms = loss_fn(images, ws)
        return images, loss.float(), terms

    def after() -> None:
        latent.constrain_()
        if after_step is not None:
            after_step()

    out = _iterate(opt, forward, schedule, keep=lambda: current["ws"].detach().cpu().clone(),
                   initial=latent.ws().detach().cpu().clone(),
                   cause=lambda step, value, terms: nonfinite_cause(step, value, current["ws"], terms),
                   save_every=save_every, callbacks=callbacks, after_step=after, stop=stop, scaler=scaler)
    if out.stop_reason:
        warnings.warn(out.stop_reason, NonFiniteLossWarning, stacklevel=2)
    best_ws = out.best
    final_ws = best_ws if out.interrupted else latent.ws().detach().cpu().clone()
    with torch.no_grad(), autocast_context("fp32", device):  # the result is rendered in float32
        final_img = G.synthesis(final_ws.to(device), noise_mode=noise_mode)
    frames = out.frames + [to_uint8_frames(final_img)]
    frame_steps = out.frame_steps + [len(out.history)]
    return OptimizeResult(ws=final_ws, best_ws=best_ws, best_loss=out.best_loss, best_step=out.best_step,
                          history=tuple(out.history), frames=tuple(frames), frame_steps=tuple(frame_steps),
                          interrupted=out.interrupted, seconds=time.perf_counter() - out.t0,
                          steps_done=len(out.history),
                          extra={"final_image": final_img.detach().cpu(), "stop_reason": out.stop_reason},
                          precision=ran)


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    ``best``: what ``keep()`` returned at the lowest-loss step (the parameters *before* that step's update),
    or ``initial`` when no step finished; ``history``: one dict per step (``step``, ``lr``, ``loss``, each
    term); ``interrupted``: stopped by Ctrl-C, ``stop()`` or a NaN/inf loss (``stop_reason`` says which).
    The trained tensors themselves are left as the last update made them: restoring ``best`` is the caller's.
    """

    best: Any
    best_loss: float
    best_step: int
    history: tuple[dict[str, float], ...]
    interrupted: bool
    seconds: float
    steps_done: int
    stop_reason: str = ""
    precision: str = "fp32"


def train(params: Sequence[torch.Tensor] | Sequence[dict], forward: StepFn, schedule: Schedule, *,
          keep: Callable[[], Any], initial: Any = None, callbacks: Sequence[Callback] = (),
          betas: tuple[float, float] = (0.9, 0.999), after_step: Callable[[], None] | None = None,
          stop: Callable[[], bool] | None = None, precision: str = "fp32",
          device: torch.device | str | None = None) -> TrainResult:
    """The same loop over arbitrary tensors (e.g. generator weights): Adam on ``params`` with the
    :class:`Schedule`, callbacks, ``stop``/Ctrl-C, best-so-far and NaN handling of :func:`run`.

    Args:
        params: tensors (or Adam parameter groups) to optimize. A tensor whose ``requires_grad`` is off
            during a step gets no gradient and Adam leaves it (and its moments) untouched that step, so
            ``forward`` may choose each step which of them train.
        forward: ``forward(step) → (images [N, C, H, W] for callbacks, scalar loss, {name: value})``.
        schedule: lr/steps/ramps (the lr of every group is set each step).
        keep: snapshot of what to keep when the loss reaches a new low (called before the update).
        initial: the "best" returned when no step finished.
        callbacks, betas, after_step, stop: as in :func:`run`.
        precision: a mode of :data:`~clipstyle.optimize.precision.PRECISIONS` (``auto`` is resolved for
            ``device``). Each ``forward`` call runs inside :func:`~clipstyle.optimize.precision.model_precision`:
            the networks in it that put :func:`~clipstyle.optimize.precision.model_autocast` around their
            forward (the critics, and the generators of :mod:`clipstyle.adapt.trainer`) run in that mode. The
            trained tensors stay float32 — they are the master weights autocast casts from on every forward —
            and so do Adam's moments; ``fp16`` scales the loss (``GradScaler``).
        device: the device of ``params`` (default: the first tensor's).

    Returns:
        :class:`TrainResult` (``precision``: the mode that ran); a NaN/inf loss also warns
        :class:`~clipstyle.errors.NonFiniteLossWarning`.

    Raises:
        PrecisionError: an unknown precision, or one the device cannot run (before any step).
    """
    params = list(params)
    if device is None:
        first = params[0]["params"][0] if params and isinstance(params[0], dict) else (params[0] if params else None)
        device = first.device if isinstance(first, torch.Tensor) else "cpu"
    device = torch.device(device)
    ran = resolve_precision(precision, device)
    opt = torch.optim.Adam(params, lr=schedule.lr, betas=betas)
    scaler = _fp16_scaler(ran, device)

    def step_in_precision(step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        with model_precision(ran, device):
            images, loss, terms = forward(step)
        return images, loss.float(), terms

    out = _iterate(opt, step_in_precision, schedule, keep=keep, initial=initial, cause=term_cause, save_every=0,
                   callbacks=callbacks, after_step=after_step, stop=stop, scaler=scaler)
    if out.stop_reason:
        warnings.warn(out.stop_reason, NonFiniteLossWarning, stacklevel=2)
    return TrainResult(best=out.best, best_loss=out.best_loss, best_step=out.best_step, history=tuple(out.history),
                       interrupted=out.interrupted, seconds=time.perf_counter() - out.t0,
                       steps_done=len(out.history), stop_reason=out.stop_reason, precision=ran)


@dataclass
class _Outcome:
    history: list[dict[str, float]]
    frames: list[np.ndarray]
    frame_steps: list[int]
    best: Any
    best_loss: float
    best_step: int
    interrupted: bool
    stop_reason: str
    t0: float


def _iterate(opt: torch.optim.Optimizer, forward: StepFn, schedule: Schedule, *, keep: Callable[[], Any],
             initial: Any, cause: Callable[[int, float, dict], str], save_every: int,
             callbacks: Sequence[Callback], after_step: Callable[[], None] | None,
             stop: Callable[[], bool] | None, scaler: Any = None) -> _Outcome:
    """The loop itself, shared by :func:`run` (a latent) and :func:`train` (any tensors); ``scaler``: fp16's
    ``GradScaler`` (the loss is scaled so that small gradients survive; steps with inf gradients are skipped)."""
    out = _Outcome([], [], [], initial, math.inf, -1, False, "", time.perf_counter())
    try:
        for step in range(schedule.steps):
            if (stop is not None and stop()) or interrupt_requested():  # also Ctrl-C in an earlier phase
                raise KeyboardInterrupt
            lr = schedule.lr_at(step)
            for group in opt.param_groups:
                group["lr"] = lr
            images, loss, terms = forward(step)
            value = float(loss.detach())
            if not math.isfinite(value):
                out.stop_reason = cause(step, value, terms)
                break
            if value < out.best_loss:  # the loss belongs to the parameters *before* this step's update
                out.best_loss, out.best_step = value, step
                out.best = keep()
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if after_step is not None:
                after_step()
            record = {"step": step, "lr": lr, "loss": value, **{k: float(v) for k, v in terms.items()}}
            out.history.append(record)
            if save_every and step % save_every == 0:
                out.frames.append(to_uint8_frames(images))
                out.frame_steps.append(step)
            info = StepInfo(step, schedule.steps, lr, value, {k: float(v) for k, v in terms.items()},
                            time.perf_counter() - out.t0)
            for cb in callbacks:
                cb(info, images)
    except KeyboardInterrupt:
        out.interrupted = True
    if out.stop_reason:  # stopped on NaN/inf: keep the best so far, as for Ctrl-C, and say why
        out.interrupted = True
    return out


def nonfinite_cause(step: int, value: float, ws: torch.Tensor, terms: dict[str, torch.Tensor]) -> str:
    """One line naming why the loss of ``step`` is ``value`` (NaN/inf): the start latent, the latent after an
    update (the learning rate), or a loss term."""
    if not bool(torch.isfinite(ws.detach()).all()):
        if step == 0:
            return ("the start latent holds NaN or infinite values (check --truncation, the seed's latent or the "
                    "latent file); nothing was optimized")
        return (f"the latent overflowed to NaN/inf at step {step}: the learning rate is too large for this "
                "loss; try a smaller --lr (the best result so far was kept)")
    return term_cause(step, value, terms, "while the latent is finite ")


def term_cause(step: int, value: float, terms: dict[str, torch.Tensor], context: str = "") -> str:
    """One line naming the loss terms that became NaN/inf at ``step`` (or just the step when none is)."""
    bad = [k for k, v in terms.items() if not math.isfinite(float(v))]
    if bad:
        where = "the generator's image" if step == 0 else f"step {step}"
        return (f"the loss term {', '.join(repr(b) for b in bad)} became {value} at {where} {context}"
                "(check that term's inputs and weights); the best result so far was kept")
    return f"the loss became {value} at step {step} (the best result so far was kept)"

