"""``batch.jsonl``: what happened to each job, and the lock that keeps two batches off one ``--outdir``.

While a batch runs, one JSON line per finished job is *appended* (flushed and ``fsync``-ed): ``id``,
``line``, ``command``, ``status`` (``done`` | ``failed``), ``folder``, ``seconds``, ``error`` (one
line, ``null`` when none), ``attempts``, ``batch`` (how many jobs shared its batch of latents) and
``worker``. A kill at any moment loses at most the line being written (a torn last line is ignored
when read). When the batch ends, the file is rewritten atomically with exactly one line per job of the
job file, in file order: the latest entry of each (jobs complete before this run keep their ``done``
entry and get ``"resumed": true``).

The manifest is a record, not the source of truth for resuming: a job is done when its run folder
is complete (:func:`clipstyle.pipelines.run.is_complete`), so a kill between the folder's rename and
its manifest line never makes a job run twice.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from clipstyle.errors import UserRuntimeError

__all__ = ["MANIFEST", "STATUSES", "Manifest", "outdir_lock", "BatchLockedError"]

MANIFEST = "batch.jsonl"
STATUSES = ("done", "failed")
LOCK = ".batch.lock"


class BatchLockedError(UserRuntimeError):
    """Another ``clipstyle batch`` is writing into the same ``--outdir``."""


class Manifest:
    """The ``batch.jsonl`` of one ``--outdir`` (append while running, :meth:`finish` at the end)."""

    def __init__(self, outdir: str | os.PathLike[str]) -> None:
        self.path = Path(outdir) / MANIFEST

    def read(self) -> list[dict[str, Any]]:
        """Every well-formed entry, in order (a torn or foreign line is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "id" in entry and entry.get("status") in STATUSES:
                    out.append(entry)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last entry of each job id."""
        return {e["id"]: e for e in self.read()}

    def append(self, entry: dict[str, Any]) -> None:
        """Append one entry durably (write, flush, fsync)."""
        if entry.get("status") not in STATUSES:
            raise ValueError(f"manifest status must be one of {STATUSES}, got {entry.get('status')!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            if os.fstat(fd).st_size > 0:  # a torn last line of a killed run: start on a fresh line
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def finish(self, job_ids: Sequence[str], resumed: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Rewrite the file atomically: one line per id of ``job_ids`` that has an entry, in that order.

        Entries of ``resumed`` ids (complete before this run) get ``"resumed": true``, the others lose
        it; entries of ids that are no longer in the job file are dropped. Returns the written entries.
        """
        from clipstyle.io.files import atomic_write_text

        latest = self.latest()
        again = set(resumed)
        entries = []
        for i in job_ids:
            if i in latest:
                entry = {k: v for k, v in latest[i].items() if k != "resumed"}
                entries.append({**entry, "resumed": True} if i in again else entry)
        atomic_write_text(self.path, "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in entries))
        return entries


@contextlib.contextmanager
def outdir_lock(outdir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``outdir/.batch.lock`` (released by the OS even on kill -9).

    Raises:
        BatchLockedError: another process holds it.
    """
    import fcntl

    path = Path(outdir)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchLockedError(f"another clipstyle batch is writing into {path}; wait for it or use "
                                   f"another --outdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
