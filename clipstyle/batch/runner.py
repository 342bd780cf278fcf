"""The batch driver: resume, group, run (here or on Ray), write the folders and the manifest.

``run_jobs`` is what ``clipstyle batch JOBS`` does:

1. take the ``--outdir`` lock, remove staging folders of killed batches;
2. every job whose folder ``outdir/<id>`` is complete is done already (resume): it is not run again;
3. the other jobs are grouped by :func:`~clipstyle.batch.jobs.group_key` (file order kept) and cut into
   batches of at most ``batch_size``;
4. the batches run in this process (:class:`~clipstyle.workflows.models.ModelCache` loads each network and
   CLIP model once) or on Ray actors (:mod:`clipstyle.batch.ray_runner`);
5. as each job finishes, this process — the only writer — renames its folder into place and appends
   its manifest line; at the end the manifest is rewritten with one line per job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from clipstyle.batch.execute import ModelCache, Outcome, execute_batch, user_error
from clipstyle.batch.folders import (
    is_complete,
    job_folder,
    remove_stale_staging,
    save_run_as,
    write_files_as,
)
from clipstyle.batch.jobs import Job, group_key
from clipstyle.batch.manifest import Manifest, outdir_lock

__all__ = ["BatchConfig", "BatchSummary", "make_batches", "run_jobs"]


@dataclass(frozen=True)
class BatchConfig:
    """How to run a job file.

    Attributes:
        outdir: folder of the run folders and ``batch.jsonl``.
        batch_size: most jobs in one stacked optimization (>= 1).
        device: ``auto``, ``cpu``, ``cuda``… (each Ray worker resolves it on its own machine).
        ray: ``None`` (this process), ``"local"`` (start a Ray cluster here) or an address / ``"auto"``.
        cpus_per_worker: CPU cores per Ray actor when the cluster has no GPU (also its torch threads).
        workers: most Ray actors (default: one per GPU, else cores // cpus_per_worker).
        max_attempts: tries of a batch whose worker died before the batch's jobs are failed.
        quiet: no progress bar.
    """

    outdir: Path
    batch_size: int = 8
    device: str = "auto"
    ray: str | None = None
    cpus_per_worker: int = 1
    workers: int | None = None
    max_attempts: int = 3
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.cpus_per_worker < 1:
            raise ValueError(f"--cpus-per-worker must be >= 1, got {self.cpus_per_worker}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


@dataclass(frozen=True)
class BatchSummary:
    """The end of a batch: ids ``done`` now, ``failed`` now, ``resumed`` (complete before), the final
    manifest entries (one per job) and the wall time."""

    done: tuple[str, ...]
    failed: tuple[str, ...]
    resumed: tuple[str, ...]
    entries: tuple[dict, ...]
    seconds: float
    folders: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def make_batches(jobs: Sequence[Job], batch_size: int) -> list[list[Job]]:
    """Group compatible jobs (same :func:`group_key`, first-seen order) into batches of ``batch_size``."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(group_key(job), []).append(job)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def run_local(batches: Sequence[Sequence[Job]], config: BatchConfig) -> Iterator[tuple[Job, Outcome, int]]:
    """Run batches in this process; yields ``(job, outcome, attempts)`` as batches finish."""
    models = ModelCache(config.device, progress=not config.quiet)
    for batch in batches:
        for job, outcome in zip(batch, execute_batch(models, batch)):
            yield job, outcome, 1


class _Progress:
    """One bar over jobs: done/total, failures, jobs/s of this run, elapsed and remaining time."""

    def __init__(self, total: int, already: int, enabled: bool) -> None:
        import sys

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.t0, self.count = time.perf_counter(), 0
        self.progress = Progress(TextColumn("[bold]jobs"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[failed]}"), TextColumn("{task.fields[rate]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True, file=sys.stderr), disable=not enabled)
        self.task = self.progress.add_task("jobs", total=total, completed=already, failed="", rate="")
        self.failed = 0

    def __enter__(self) -> "_Progress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def advance(self, failed: bool) -> None:
        self.count += 1
        self.failed += failed
        elapsed = time.perf_counter() - self.t0
        self.progress.update(self.task, advance=1, failed=f"{self.failed} failed" if self.failed else "",
                             rate=f"{self.count / elapsed:.2f} jobs/s" if elapsed > 0 else "")


def run_jobs(jobs: Sequence[Job], config: BatchConfig, on_job: Callable[[Job, dict], None] | None = None,
             ray_worker: type | None = None) -> BatchSummary:
    """Run every job of a validated job file that is not complete yet (see the module docstring).

    Args:
        jobs: from :func:`~clipstyle.batch.jobs.read_jobs` (unique ids).
        config: :class:`BatchConfig`.
        on_job: called after each job's folder and manifest line are written, with the job and its entry.
        ray_worker: the Ray actor class (default :class:`~clipstyle.batch.ray_runner.BatchWorker`; tests
            inject one that dies).

    Returns:
        :class:`BatchSummary`.

    Raises:
        BatchLockedError: another batch writes into ``config.outdir``.
        RayMissingError / RayError: ``config.ray`` without Ray, or a cluster that cannot be reached.
        KeyboardInterrupt: Ctrl-C (jobs finished so far are saved; the rest run on the next call).
    """
    t0 = time.perf_counter()
    outdir = Path(config.outdir)
    manifest = Manifest(outdir)
    done: list[str] = []
    failed: list[str] = []
    folders: dict[str, Path] = {}
    with outdir_lock(outdir):
        remove_stale_staging(outdir)
        previous = manifest.latest()
        resumed = [j for j in jobs if is_complete(job_folder(outdir, j.id))]
        for job in resumed:
            folders[job.id] = job_folder(outdir, job.id)
            prev = previous.get(job.id)
            if prev is None or prev.get("status") != "done":  # killed between the rename and the manifest line
                manifest.append(_entry(job, "done", folders[job.id], None, None, 0, 0, None))
        resumed_ids = {j.id for j in resumed}
        pending = [j for j in jobs if j.id not in resumed_ids]
        batches = make_batches(pending, config.batch_size)
        if config.ray is None:
            stream = run_local(batches, config)
        else:
            from clipstyle.batch.ray_runner import run_on_ray

            stream = run_on_ray(batches, config, **({"worker_cls": ray_worker} if ray_worker else {}))
        with _Progress(len(jobs), len(resumed), enabled=not config.quiet) as bar:
            try:
                for job, outcome, attempts in stream:
                    entry = _finish(job, outcome, attempts, outdir)
                    manifest.append(entry)
                    (done if entry["status"] == "done" else failed).append(job.id)
                    if entry["status"] == "done":
                        folders[job.id] = Path(entry["folder"])
                    bar.advance(entry["status"] != "done")
                    if on_job is not None:
                        on_job(job, entry)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                entries = manifest.finish([j.id for j in jobs], resumed_ids)  # Ctrl-C too: one line per job
    return BatchSummary(tuple(done), tuple(failed), tuple(j.id for j in resumed), tuple(entries),
                        time.perf_counter() - t0, folders)


def _entry(job: Job, status: str, folder: Path | None, error: str | None, seconds: float | None, batch: int,
           attempts: int, worker: str | None) -> dict:
    return {"id": job.id, "line": job.line, "command": job.command, "status": status,
            "folder": str(folder) if folder is not None else None, "seconds": None if seconds is None else
            round(float(seconds), 3), "error": error, "batch": batch, "attempts": attempts, "worker": worker}


def _finish(job: Job, outcome: Outcome, attempts: int, outdir: Path) -> dict:
    """Write a finished job's folder (when it succeeded) and return its manifest entry."""
    if outcome.status == "done":
        try:
            if outcome.files is not None:
                folder = write_files_as(outcome.files, outdir, job.id)
            else:
                folder = save_run_as(outcome.run, outdir, job.id)
            return _entry(job, "done", folder, None, outcome.seconds, outcome.batch, attempts, outcome.worker)
        except Exception as exc:
            return _entry(job, "failed", None, f"writing the run folder: {user_error(exc)}", outcome.seconds,
                          outcome.batch, attempts, outcome.worker)
    return _entry(job, "failed", None, outcome.error, outcome.seconds, outcome.batch, attempts, outcome.worker)
