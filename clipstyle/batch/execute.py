"""Running one batch of compatible jobs in this process: the models it holds, the pipelines it calls.

:class:`Models` loads each generator and CLIP model once and keeps it for every later batch of the
process (a local run, or one Ray worker). :func:`execute_batch` runs jobs that share a
:func:`~clipstyle.batch.jobs.group_key`: text jobs as one stacked optimization
(:mod:`clipstyle.batch.stack`), other commands one by one through their public pipeline. Every
failure becomes a failed :class:`Outcome` with a one-line error; the other jobs go on.
"""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from clipstyle.batch.jobs import Job
from clipstyle.errors import NonFiniteLossWarning, UserRuntimeError, describe, error_line

__all__ = ["Models", "Outcome", "execute_batch", "PIPELINES", "pipeline_for", "pipeline_options", "user_error"]

#: The public pipeline of each command: ``(module, function)``.
PIPELINES: dict[str, tuple[str, str]] = {
    "text": ("clipstyle.pipelines.text", "text_to_image"),
    "edit": ("clipstyle.pipelines.photo", "edit"),
    "project": ("clipstyle.pipelines.photo", "project"),
    "generate": ("clipstyle.pipelines.creative", "generate"),
}

# The job key → the pipeline's keyword where they differ.
_RENAMES = {"class": "class_idx"}
# Keys the batch consumes itself and does not pass to a non-text pipeline.
_MODEL_KEYS = ("network", "clip_model", "clip_pretrained", "blend")


class PipelineMissingError(UserRuntimeError):
    """The pipeline of a job's command is not part of this clipstyle."""


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


def pipeline_for(command: str) -> Callable[..., Any]:
    """The public pipeline function of ``command``.

    Raises:
        PipelineMissingError: its module or function is not in this installation.
    """
    module, name = PIPELINES[command]
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if getattr(exc, "name", None) and not module.startswith(str(exc.name)):
            raise  # the pipeline exists but one of *its* imports is broken: not the user's problem
        raise PipelineMissingError(f"{command} jobs need {module}.{name}, which this clipstyle does not have") from None
    except AttributeError:
        raise PipelineMissingError(f"{command} jobs need {module}.{name}, which this clipstyle does not have") from None
    return fn


def pipeline_options(command: str) -> set[str] | None:
    """The job keys a non-text command accepts (its pipeline's keyword names), or ``None`` if unknown."""
    try:
        fn = pipeline_for(command)
    except PipelineMissingError:
        return None
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    inverse = {v: k for k, v in _RENAMES.items()}
    names = {inverse.get(n, n) for n in params} - {"G", "guide", "callback", "stop", "quiet", "device"}
    if "photo_or_latents" in params:  # the edit command's argument: a job may just say "photo"
        names.add("photo")
    if "G" in params:  # the batch loads the network and hands it over
        names |= {"network"}
    if "guide" in params:
        names |= {"clip_model", "clip_pretrained"}
    return names


class Models:
    """Generators and CLIP models loaded once per process, by (network, blend) and (model, weights).

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``…
        progress: show download progress bars.
    """

    def __init__(self, device: str = "auto", progress: bool = False) -> None:
        from clipstyle.pipelines.common import pick_device

        self.device = pick_device(device)
        self.progress = progress
        self._generators: dict[tuple, Any] = {}
        self._guides: dict[tuple, Any] = {}

    def generator(self, network: str, blend: str | None = None) -> Any:
        """The generator of ``network`` (blended with ``blend``), loaded at most once."""
        from clipstyle.pipelines.common import load_network

        key = (network, blend or None)
        if key not in self._generators:
            self._generators[key] = load_network(network, self.device, blend, progress=self.progress)
        return self._generators[key]

    def guide(self, clip_model: str, clip_pretrained: str) -> Any:
        """The CLIP model, loaded at most once."""
        from clipstyle.pipelines.common import load_guide

        key = (clip_model, clip_pretrained)
        if key not in self._guides:
            self._guides[key] = load_guide(clip_model, clip_pretrained, self.device)
        return self._guides[key]


def _text_kwargs(o: Mapping[str, Any]) -> dict[str, Any]:
    """A text job's options as :func:`~clipstyle.pipelines.text.text_job` keywords."""
    mix = o.get("mix") or ()
    return {"seed": o.get("seed"), "truncation": o["truncation"], "blocks": o.get("blocks"),
            "mix": [mix] if isinstance(mix, str) else list(mix), "recipe": o.get("recipe"), "batch": o["batch"],
            "cutouts": o.get("cutouts"), "l2": o.get("l2"), "image_prompt": o.get("image_prompt"),
            "class_idx": o.get("class"), "lr": o["lr"], "steps": o["steps"]}


def _text_run(job: Job, text_job: Any, result: Any, G: Any, device: str) -> Any:
    """The :class:`Run` of a text job, with the settings :func:`text_to_image` records (plus the job's id)."""
    from clipstyle.pipelines.run import Run

    o = job.options
    settings = {"command": "text", "network": o["network"], "clip_model": o["clip_model"],
                "clip_pretrained": o["clip_pretrained"], **text_job.settings, "save_every": o["save_every"],
                "device": device, "precision": o["precision"], "noise_mode": "const", "blend": o.get("blend"),
                "job_id": job.id}
    extra = {f"item{i}.png": img for i, img in enumerate(result.frames[-1])} if text_job.n > 1 else {}
    return Run(name=text_job.name, result=result, settings=settings, network=G.describe(), z=text_job.z,
               c=text_job.c, extra_images=extra)


def _text_batch(models: Models, jobs: Sequence[Job]) -> list[Outcome]:
    from clipstyle.batch.stack import optimize_stacked
    from clipstyle.pipelines.text import text_job

    t0 = time.perf_counter()
    first = jobs[0].options
    try:
        G = models.generator(first["network"], first.get("blend"))
        guide = models.guide(first["clip_model"], first["clip_pretrained"])
    except Exception as exc:  # the shared models: every job of the batch fails with the same line
        msg = user_error(exc)
        return [Outcome(j.id, "failed", error=msg, seconds=time.perf_counter() - t0, batch=len(jobs)) for j in jobs]

    def build(job: Job):
        return text_job(G, guide, job.options.get("prompt", ""), **_text_kwargs(job.options))

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
            outcomes[job.id] = Outcome(job.id, "done", run=_text_run(job, tj, res, G, models.device),
                                       seconds=seconds, batch=len(group))

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


def _other_job(models: Models, job: Job) -> Outcome:
    t0 = time.perf_counter()
    try:
        fn = pipeline_for(job.command)
        params = inspect.signature(fn).parameters
        o = dict(job.options)
        if "photo" in o and "photo" not in params and "photo_or_latents" in params:
            o["photo_or_latents"] = o.pop("photo")
        kwargs = {_RENAMES.get(k, k): v for k, v in o.items() if k not in _MODEL_KEYS or k in params}
        if "G" in params and "network" in o:
            kwargs["G"] = models.generator(o["network"], o.get("blend"))
        if "guide" in params and "clip_model" in o:
            kwargs["guide"] = models.guide(o["clip_model"], o.get("clip_pretrained", "openai"))
        if "device" in params:
            kwargs["device"] = models.device
        if "quiet" in params:
            kwargs["quiet"] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteLossWarning)
            run = fn(**kwargs)
        result = getattr(run, "result", None)
        _raise_if_stopped([result] if result is not None else [])
        if getattr(run, "interrupted", False):
            raise KeyboardInterrupt
        return Outcome(job.id, "done", run=run, seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - classified by type in clipstyle.errors.describe
        return Outcome(job.id, "failed", error=user_error(exc), seconds=time.perf_counter() - t0)


def execute_batch(models: Models, jobs: Sequence[Job]) -> list[Outcome]:
    """Run jobs of one :func:`~clipstyle.batch.jobs.group_key` → one :class:`Outcome` per job, in order.

    Text jobs are optimized as one stacked batch (if that batch fails, e.g. one job's loss becomes NaN,
    each job is run alone so that only the broken one fails). Other commands run one by one.
    ``KeyboardInterrupt`` is not caught: an interrupted batch saves nothing and is redone on resume.
    """
    if not jobs:
        return []
    if jobs[0].command == "text":
        return _text_batch(models, jobs)
    return [_other_job(models, j) for j in jobs]
