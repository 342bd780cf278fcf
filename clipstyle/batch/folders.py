"""Run folders of a batch: ``outdir/<job id>``, written so that a complete-looking folder is a finished job.

A job's files are written into ``outdir/.staging-batch-<pid>-<id>`` and that folder is renamed to
``outdir/<id>`` in one ``rename`` (POSIX: atomic). ``run.json`` is written last inside the staging
folder, and :func:`~clipstyle.pipelines.run.is_complete` asks for it, so a kill -9 at any moment leaves
either no ``outdir/<id>`` or a complete one, plus at most a staging folder that the next batch on this
``--outdir`` removes (:func:`remove_stale_staging`). Unlike :meth:`Run.save`, the name is exact
(no ``-0001`` suffix): resuming must find the same folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from clipstyle.pipelines.run import RUN_RECORD, is_complete
from clipstyle.errors import UserRuntimeError

__all__ = ["job_folder", "is_complete", "save_run_as", "write_files_as", "pack_run", "remove_stale_staging",
           "FolderTakenError"]

STAGING_PREFIX = ".staging-batch-"


class FolderTakenError(UserRuntimeError):
    """``outdir/<id>`` exists, is not a complete run folder, and is not empty: we never overwrite it."""


def job_folder(outdir: str | os.PathLike[str], job_id: str) -> Path:
    """``outdir/<job id>``."""
    return Path(outdir) / job_id


def _place(staging: Path, target: Path) -> Path:
    if target.exists() and not is_complete(target):
        try:
            target.rmdir()  # an empty folder (a claimed name whose rename never came) is nothing to keep
        except OSError:
            raise FolderTakenError(f"{target} exists but is not a complete run folder (no {RUN_RECORD}); "
                                   f"move it away and run again") from None
    if is_complete(target):
        raise FolderTakenError(f"{target} is already a complete run folder")
    os.rename(staging, target)  # atomic; fails (nothing changed) if target appeared meanwhile
    return target


def _staging(outdir: Path, job_id: str) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    staging = outdir / f"{STAGING_PREFIX}{os.getpid()}-{job_id}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def save_run_as(run: Any, outdir: str | os.PathLike[str], job_id: str) -> Path:
    """Write ``run`` (a :class:`~clipstyle.pipelines.run.Run`) as the folder ``outdir/<job_id>``.

    Raises:
        FolderTakenError: the folder exists and is complete, or is a non-empty incomplete folder.
        OSError: ``outdir`` cannot be written.
    """
    outdir = Path(outdir)
    staging = _staging(outdir, job_id)
    try:
        run.write_into(staging)
        return _place(staging, job_folder(outdir, job_id))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def pack_run(run: Any) -> dict[str, bytes]:
    """The files of ``run``'s folder as ``{relative name: bytes}`` (how Ray workers return a run: the
    encoded PNG/GIF/npz are far smaller than the frames, and the driver needs no access to the
    worker's disk)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="clipstyle-pack-") as tmp:
        run.write_into(Path(tmp))
        return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


def write_files_as(files: Mapping[str, bytes], outdir: str | os.PathLike[str], job_id: str) -> Path:
    """Write packed files (:func:`pack_run`) as the folder ``outdir/<job_id>``, ``run.json`` last.

    Raises:
        ValueError: a file name that would leave the folder, or no ``run.json``.
        FolderTakenError, OSError: as :func:`save_run_as`.
    """
    if RUN_RECORD not in files:
        raise ValueError(f"a packed run has no {RUN_RECORD}")
    outdir = Path(outdir)
    staging = _staging(outdir, job_id)
    try:
        for name in sorted(files, key=lambda n: n == RUN_RECORD):
            rel = Path(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"bad file name in a packed run: {name!r}")
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as f:
                f.write(files[name])
                f.flush()
                os.fsync(f.fileno())
        return _place(staging, job_folder(outdir, job_id))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(outdir: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.staging-batch-<pid>-*`` folders of processes that are gone (killed batches); returns them."""
    removed = []
    outdir = Path(outdir)
    if not outdir.is_dir():
        return removed
    for p in outdir.iterdir():
        if not p.name.startswith(STAGING_PREFIX) or not p.is_dir():
            continue
        pid = p.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
