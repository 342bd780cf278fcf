"""Batches on a Ray cluster: one actor per GPU (or per ``--cpus-per-worker`` cores) holding the models.

``--ray local`` starts a Ray cluster on this machine (``ray.init()``); ``--ray ADDRESS`` or ``--ray auto``
joins a running one (``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the
others). The driver creates the actors (``num_gpus=1`` each when the cluster has GPUs and the device is
not ``cpu``; else ``num_cpus=cpus_per_worker``), hands one batch to each idle actor and waits with
``ray.wait``; Ray places the actors and moves the jobs and results.

**Who writes the folders: the driver.** A worker runs its batch, writes each run folder into a local
temporary folder and returns the encoded files (PNG, GIF, npz, ``run.json``: a few hundred kB per job at
1024², far less than the frames); the driver renames each job's folder into ``--outdir`` and appends the
manifest line. So the workers need no shared file system (most clusters have none at the same path),
there is one writer of ``batch.jsonl`` and of each folder, and a worker that dies can have written
nothing: its batch is sent again, to any live actor (Ray restarts the dead one), at most
``max_attempts`` times; a result that arrives for a job whose folder is already complete is dropped, so
nothing is written twice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from clipstyle.batch.execute import ModelCache, Outcome, execute_batch
from clipstyle.batch.jobs import Job
from clipstyle.errors import UserRuntimeError

__all__ = ["RayMissingError", "RayError", "BatchWorker", "run_on_ray", "import_ray"]

INSTALL_HINT = "pip install 'clipstyle[ray]'"


class RayMissingError(UserRuntimeError):
    """``--ray`` without Ray installed."""


class RayError(UserRuntimeError):
    """A Ray cluster that cannot be started or reached."""


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        RayMissingError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError:
        raise RayMissingError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class BatchWorker:
    """The body of one Ray actor: holds :class:`~clipstyle.workflows.models.ModelCache` and runs batches (see :func:`execute_batch`).

    Args:
        device: the jobs' device on the actor's machine (``auto``: the GPU Ray gave it, else CPU).
        threads: torch intra-op threads (the actor's CPU share).
    """

    def __init__(self, device: str = "auto", threads: int = 1) -> None:
        import torch

        from clipstyle.optimize.allocator import keep_freed_memory

        keep_freed_memory()  # the actor's process runs jobs only (see clipstyle.optimize.allocator)
        torch.set_num_threads(max(1, int(threads)))
        self.models = ModelCache(device)

    def run_batch(self, jobs: Sequence[dict]) -> list[dict]:
        """Run job dicts (:meth:`Job.to_dict`) → outcome dicts with packed folders (no ``Run`` objects)."""
        from clipstyle.batch.folders import pack_run

        out = []
        for outcome in execute_batch(self.models, [Job.from_dict(j) for j in jobs]):
            files, error, status = None, outcome.error, outcome.status
            if status == "done":
                try:
                    files = pack_run(outcome.run)
                except Exception as exc:
                    from clipstyle.batch.execute import user_error

                    status, error = "failed", f"writing the run folder: {user_error(exc)}"
            out.append({"job_id": outcome.job_id, "status": status, "files": files, "error": error,
                        "seconds": outcome.seconds, "batch": outcome.batch, "worker": outcome.worker})
        return out

    def ping(self) -> str:
        """``host:pid`` (the driver waits on it to know the actor is up)."""
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"


def _init(ray: Any, address: str, config: Any) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}}
    try:
        if address == "local":
            ray.init(address="local", include_dashboard=False, log_to_driver=False, runtime_env=env,
                     num_cpus=os.cpu_count(), configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayError(f"cannot {'start a local Ray cluster' if address == 'local' else 'join Ray at ' + address}: "
                       f"{' '.join(str(exc).split())[:300]}") from None


def _actor_options(ray: Any, config: Any) -> tuple[int, dict[str, Any], int]:
    """(number of actors, their ``.options()``, torch threads each)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if gpus > 0 and not str(config.device).startswith("cpu"):
        n, opts, threads = gpus, {"num_gpus": 1, "num_cpus": 1}, max(1, config.cpus_per_worker)
    else:
        n = max(1, cpus // config.cpus_per_worker)
        opts, threads = {"num_cpus": config.cpus_per_worker}, config.cpus_per_worker
    if config.workers is not None:
        n = min(n, config.workers) if gpus > 0 and not str(config.device).startswith("cpu") else config.workers
    return n, opts, threads


def run_on_ray(batches: Sequence[Sequence[Job]], config: Any, worker_cls: type = BatchWorker
               ) -> Iterator[tuple[Job, Outcome, int]]:
    """Run batches on Ray actors; yields ``(job, outcome, attempts)`` as batches come back.

    Args:
        batches: lists of compatible jobs (:func:`~clipstyle.batch.runner.make_batches`).
        config: :class:`~clipstyle.batch.runner.BatchConfig` (``ray``, ``device``, ``cpus_per_worker``,
            ``workers``, ``max_attempts``).
        worker_cls: the actor's class (tests inject a worker that dies).

    Raises:
        RayMissingError, RayError: see :func:`import_ray`, a cluster that cannot be started or reached.
    """
    ray = import_ray()
    from ray.exceptions import RayActorError

    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, config.ray, config)
    try:
        n_actors, opts, threads = _actor_options(ray, config)
        n_actors = max(1, min(n_actors, len(batches)))
        remote_cls = ray.remote(worker_cls).options(max_restarts=-1, max_task_retries=0, **opts)
        actors = [remote_cls.remote(config.device, threads) for _ in range(n_actors)]
        queue: list[tuple[list[Job], int]] = [(list(b), 1) for b in reversed(batches)]  # pop() keeps file order
        running: dict[Any, tuple[Any, list[Job], int]] = {}
        pinging: dict[Any, Any] = {actor.ping.remote(): actor for actor in actors}  # up (again) when it answers
        idle: list[Any] = []
        while queue or running:
            while queue and idle:
                batch, attempt = queue.pop()
                actor = idle.pop(0)
                running[actor.run_batch.remote([j.to_dict() for j in batch])] = (actor, batch, attempt)
            ready, _ = ray.wait([*running, *pinging], num_returns=1)
            for ref in ready:
                if ref in pinging:
                    actor = pinging.pop(ref)
                    try:
                        ray.get(ref)
                        idle.append(actor)
                    except RayActorError:  # still restarting: ask again
                        pinging[actor.ping.remote()] = actor
                    continue
                actor, batch, attempt = running.pop(ref)
                try:
                    results = ray.get(ref)
                except RayActorError as exc:
                    pinging[actor.ping.remote()] = actor  # Ray restarts it (max_restarts=-1)
                    if attempt < config.max_attempts:  # (actors get work only once they answer a ping)
                        queue.append((batch, attempt + 1))
                    else:
                        msg = f"its Ray worker died {attempt} times while running this batch ({type(exc).__name__})"
                        for job in batch:
                            yield job, Outcome(job.id, "failed", error=msg, batch=len(batch), worker="ray"), attempt
                    continue
                idle.append(actor)
                by_id = {r["job_id"]: r for r in results}
                for job in batch:
                    r = by_id[job.id]
                    yield job, Outcome(job.id, r["status"], files=r["files"], error=r["error"], seconds=r["seconds"],
                                       batch=r["batch"], worker=r["worker"]), attempt
    finally:
        if started_here:
            try:
                ray.shutdown()
            except Exception as exc:  # pragma: no cover - shutting down a broken cluster
                print(f"warning: ray.shutdown failed: {exc}", file=sys.stderr)
