"""Several text jobs in one batch of latents: one generator forward for all, a loss per job on its own rows.

Jobs that share the generator, CLIP model and Adam schedule are stacked along the batch axis: the
latents ``ws0`` of jobs ``1…k`` (``[n_i, num_ws, w_dim]`` each) become one ``[Σ n_i, num_ws, w_dim]``
:class:`StackedLatent` and run through :func:`clipstyle.optimize.loop.run` (the one loop) once. The
objective is ``L = Σ_i L_i(images[s_i], ws[s_i])`` where ``s_i`` are job i's rows and ``L_i`` its own
loss (its own prompts, constraints and cutout generator). Because ``G.synthesis`` treats every row
independently (no batch statistics) and Adam is element-wise, ``∂L/∂ws[s_i] = ∂L_i/∂ws[s_i]``: no
job's gradient or update depends on another job, and each job's result equals the result of running
it alone up to the float rounding of a batched convolution. Each job keeps its own loss history, best
loss/step (tracked on its own loss, as the loop does for one job) and frames.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from clipstyle.optimize.loop import OptimizeResult

__all__ = ["StackedLatent", "optimize_stacked"]


class StackedLatent(nn.Module):
    """Per-job :class:`~clipstyle.latents.Latent` objects concatenated along the batch axis.

    Unlike one ``Latent`` (one row mask for the batch), each job keeps its own free rows and its own
    fixed (start / mixed) rows: ``ws()[s_i] == parts[i].ws()`` exactly, for every ``i``.

    Args:
        parts: latents in W+ space without a trust radius (what a text job builds), all with the
            same ``num_ws``, ``w_dim`` and device.

    Raises:
        ValueError: no parts, mismatched shapes, a W-space part or a trust radius.
    """

    def __init__(self, parts: Sequence[Any]) -> None:
        super().__init__()
        if not parts:
            raise ValueError("nothing to stack")
        shape = tuple(parts[0].fixed.shape[1:])
        for p in parts:
            if tuple(p.fixed.shape[1:]) != shape:
                raise ValueError(f"cannot stack latents of shapes {list(shape)} and {list(p.fixed.shape[1:])}")
            if p.space != "w+" or p.trust_radius is not None:
                raise ValueError("only W+ latents without a trust radius can be stacked")
        sizes = [int(p.fixed.shape[0]) for p in parts]
        self.slices = tuple(slice(a, a + n) for a, n in zip([0, *_cumsum(sizes)[:-1]], sizes))
        with torch.no_grad():
            self.register_buffer("start", torch.cat([p.start for p in parts]))  # [N, num_ws, w_dim]
            self.register_buffer("fixed", torch.cat([p.fixed for p in parts]))  # [N, num_ws, w_dim]
            self.register_buffer("mask", torch.cat([p.mask[None].expand(n, -1) for p, n in zip(parts, sizes)]))
            self.param = nn.Parameter(torch.cat([p.param.detach() for p in parts]).clone())  # [N, num_ws, w_dim]
        self.space, self.trust_radius = "w+", None

    @property
    def free_rows(self) -> tuple[int, ...]:
        """Rows free in at least one job."""
        return tuple(int(i) for i in torch.nonzero(self.mask.any(0)).flatten())

    def ws(self) -> torch.Tensor:
        """Current ``[N, num_ws, w_dim]``; each job's fixed rows are exactly its ``fixed`` rows."""
        return torch.where(self.mask[:, :, None], self.param, self.fixed)

    def constrain_(self) -> None:
        """Nothing to do (no trust radius); kept for the loop's interface."""


def _cumsum(xs: Sequence[int]) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out


def optimize_stacked(G: Any, jobs: Sequence[Any], *, save_every: int = 10, precision: str = "fp32",
                     callbacks: Sequence[Callable] = ()) -> list[OptimizeResult]:
    """Optimize text jobs together; returns one :class:`OptimizeResult` per job, in order.

    Args:
        G: the generator all jobs were built on (``text_job(G, …)``).
        jobs: :class:`~clipstyle.pipelines.text.TextJob` objects with equal ``schedule``; their ``ws0``
            ``[n_i, num_ws, w_dim]`` are stacked in order.
        save_every, precision, callbacks: as for :func:`clipstyle.optimize.loop.run` (the callbacks see
            the summed loss and the whole batch of images).

    Returns:
        Per job: ``ws``/``best_ws`` ``[n_i, num_ws, w_dim]`` float32 CPU, its own ``history`` (``step``,
        ``lr``, ``loss`` = its own loss, its own terms), ``best_loss``/``best_step`` of its own loss,
        ``frames`` ``[n_i, H, W, C]`` uint8, and the batch's ``seconds`` (shared).

    Raises:
        ValueError: different schedules, or latents that cannot be stacked.
        FloatingPointError: some job's loss became NaN/inf (the whole batch stops; run the jobs alone to
            find which).
    """
    from clipstyle.optimize.loop import run

    if not jobs:
        return []
    schedule = jobs[0].schedule
    if any(j.schedule != schedule for j in jobs):
        raise ValueError("jobs in one batch need the same steps and learning rate")
    device = G.w_avg.device
    latent = StackedLatent([j.latent(device) for j in jobs])
    slices = latent.slices
    best = [{"loss": math.inf, "step": -1, "ws": latent.ws().detach()[s].cpu().clone()} for s in slices]
    step = [0]

    def loss_fn(images: torch.Tensor, ws: torch.Tensor):  # images [N, 3, H, W], ws [N, num_ws, w_dim]
        total, terms = None, {}
        for i, (job, s) in enumerate(zip(jobs, slices)):
            value, job_terms = job.loss(images[s], ws[s])
            total = value if total is None else total + value
            v = float(value.detach())
            if v < best[i]["loss"]:  # as the loop does for one job: the ws before this step's update
                best[i].update(loss=v, step=step[0], ws=ws[s].detach().cpu().clone())
            terms[f"{i}/loss"] = value.detach()
            for k, t in job_terms.items():
                terms[f"{i}/{k}"] = t
        step[0] += 1
        return total, terms

    from clipstyle.optimize.precision_verdicts import verified_precision

    precision = verified_precision(G, precision, latent.param.device)  # measured safe on G, or refused / fp32
    result = run(G, latent, loss_fn, schedule, save_every=save_every, callbacks=list(callbacks), precision=precision)
    final = result.extra.get("final_image")
    out = []
    for i, s in enumerate(slices):
        prefix = f"{i}/"
        history = tuple({"step": r["step"], "lr": r["lr"], "loss": r[prefix + "loss"],
                         **{k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix) and k != prefix + "loss"}}
                        for r in result.history)
        out.append(OptimizeResult(
            ws=result.ws[s].clone(), best_ws=best[i]["ws"], best_loss=best[i]["loss"], best_step=best[i]["step"],
            history=history, frames=tuple(f[s].copy() for f in result.frames), frame_steps=result.frame_steps,
            interrupted=result.interrupted, seconds=result.seconds, steps_done=result.steps_done,
            extra={"stop_reason": result.extra.get("stop_reason", ""),
                   **({"final_image": final[s].clone()} if final is not None else {})}))
    return out
