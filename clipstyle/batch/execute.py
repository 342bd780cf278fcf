"""Running one batch of compatible jobs in this process, through the one registry of workflows.

A :class:`~clipstyle.workflows.models.ModelCache` loads each generator and CLIP model once and keeps it
for every later batch of the process (a local run, or one Ray worker). :func:`execute_batch` runs jobs
that share a :func:`~clipstyle.batch.jobs.group_key`: text jobs as one stacked optimization
(:mod:`clipstyle.batch.stack`), other workflows one by one (:meth:`Workflow.run
<clipstyle.workflows.registry.Workflow.run>`). Every failure becomes a failed :class:`Outcome` with the
one line the command line prints for it (:func:`user_error`); the other jobs go on.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from clipstyle.batch.jobs import Job
from clipstyle.errors import NonFiniteLossWarning, describe, error_line
from clipstyle.workflows.models import ModelCache

__all__ = ["ModelCache", "Outcome", "execute_batch", "user_error"]


@dataclass(frozen=True)
class Outcome:
    """What became of one job.

    Attributes:
        job_id: the job's id.
        status: ``done`` or ``failed``.
        run: the :class:`~clipstyle.pipelines.run.Run` (local runs), or ``None``.
        files: the run folder's packed files (Ray workers, see :func:`~clipstyle.batch.folders.pack_run`).
        error: one line when failed.
        seconds: wall time of the job's batch share (a stacked batch: the batch's time).
        batch: how many jobs shared its optimization.
        worker: ``host:pid`` of the process that ran it.
    """

    job_id: str
    status: str
    run: Any = None
    files: Mapping[str, bytes] | None = None
    error: str | None = None
    seconds: float = 0.0
    batch: int = 1
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def user_error(exc: BaseException) -> str:
    """One line for a failed job: :func:`clipstyle.errors.error_line`, the line the CLI and the UI show for the
    same exception; a bug's traceback also goes to stderr, so it is never disguised as the user's fault."""
    if describe(exc) is None:
        print("".join(traceback.format_exception(exc)), file=sys.stderr, end="")
    return error_line(exc)


def _text_batch(models: ModelCache, jobs: Sequence[Job]) -> list[Outcome]:
    from clipstyle.batch.stack import optimize_stacked
    from clipstyle.pipelines.text import text_job, text_run

    t0 = time.perf_counter()
    first = jobs[0].settings
    keys = first.model_keys()
    try:
        G = models.get("G", keys["G"])
        guide = models.get("guide", keys["guide"])
    except Exception as exc:  # the shared models: every job of the batch fails with the same line
        msg = user_error(exc)
        return [Outcome(j.id, "failed", error=msg, seconds=time.perf_counter() - t0, batch=len(jobs)) for j in jobs]

    def build(job: Job):
        return text_job(G, guide, job.settings)

    outcomes: dict[str, Outcome] = {}
    built: list[tuple[Job, Any]] = []
    for job in jobs:
        try:
            built.append((job, build(job)))
        except Exception as exc:
            outcomes[job.id] = Outcome(job.id, "failed", error=user_error(exc), batch=len(jobs))

    def optimize(group: list[tuple[Job, Any]]) -> None:
        o = group[0][0].options
        t = time.perf_counter()
        with warnings.catch_warnings():  # a NaN/inf stop is this job's failure, reported below
            warnings.simplefilter("ignore", NonFiniteLossWarning)
            results = optimize_stacked(G, [tj for _, tj in group], save_every=o["save_every"],
                                       precision=o["precision"])
        _raise_if_stopped(results)
        seconds = time.perf_counter() - t
        for (job, tj), res in zip(group, results):
            run = text_run(job.settings, tj, res, G, models.device, extra_settings={"job_id": job.id})
            outcomes[job.id] = Outcome(job.id, "done", run=run, seconds=seconds, batch=len(group))

    if built:
        try:
            optimize(built)
        except Exception as exc:
            if len(built) == 1:
                outcomes[built[0][0].id] = Outcome(built[0][0].id, "failed", error=user_error(exc), batch=1)
            else:  # find the job that broke the batch (a NaN…): each alone, from a fresh job (fresh generator)
                for job, _ in built:
                    try:
                        optimize([(job, build(job))])
                    except Exception as exc_one:
                        outcomes[job.id] = Outcome(job.id, "failed", error=user_error(exc_one), batch=1)
    return [outcomes[j.id] for j in jobs]


def _raise_if_stopped(results: Sequence[Any]) -> None:
    """Optimization results that stopped on a NaN/inf loss fail their job(s) (``NonFiniteLossError`` naming the
    cause); one stopped by Ctrl-C interrupts the batch (``KeyboardInterrupt``: nothing of it is saved, resume
    redoes it)."""
    from clipstyle.errors import NonFiniteLossError

    reasons = [r.extra.get("stop_reason") for r in results if r.extra.get("stop_reason")]
    if reasons:
        raise NonFiniteLossError(reasons[0])
    if any(r.interrupted for r in results):
        raise KeyboardInterrupt


def _other_job(models: ModelCache, job: Job) -> Outcome:
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteLossWarning)
            run = job.workflow.run(job.settings, models=models, quiet=True)
        result = getattr(run, "result", None)
        _raise_if_stopped([result] if result is not None else [])
        if getattr(run, "interrupted", False):
            raise KeyboardInterrupt
        return Outcome(job.id, "done", run=run, seconds=time.perf_counter() - t0)
    except Exception as exc:
        return Outcome(job.id, "failed", error=user_error(exc), seconds=time.perf_counter() - t0)


def execute_batch(models: ModelCache, jobs: Sequence[Job]) -> list[Outcome]:
    """Run jobs of one :func:`~clipstyle.batch.jobs.group_key` → one :class:`Outcome` per job, in order.

    Text jobs are optimized as one stacked batch (if that batch fails, e.g. one job's loss becomes NaN,
    each job is run alone so that only the broken one fails). Other workflows run one by one.
    ``KeyboardInterrupt`` is not caught: an interrupted batch saves nothing and is redone on resume.
    """
    if not jobs:
        return []
    if jobs[0].command == "text":
        return _text_batch(models, jobs)
    return [_other_job(models, j) for j in jobs]
