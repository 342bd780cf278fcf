"""``clipstyle batch JOBS``: many jobs from a file, batched on one device or spread over a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError, handle_errors


@handle_errors
def batch_command(
    jobs: Annotated[Path, typer.Argument(help="Job file: JSON lines (one object per line) or TOML ([[job]] tables). "
                                         "Keys are the commands' option names (prompt, seed, steps, blocks, mix, "
                                         "recipe…), plus 'command' (text, edit, project, generate) and 'id'.")],
    outdir: Annotated[Path, typer.Option(help="Folder of the run folders (one per job, named by its id) and "
                                         "batch.jsonl.")] = Path("out/batch"),
    batch_size: Annotated[int, typer.Option(help="Most jobs optimized together in one batch of latents (jobs with "
                                            "the same network, CLIP model, command and steps).", min=1)] = 8,
    network: Annotated[Optional[str], typer.Option("--network", "-n", help="Network of jobs that name none "
                                                   "(default ffhq).")] = None,
    clip_model: Annotated[Optional[str], typer.Option(help="CLIP model of jobs that name none (default "
                                                      "ViT-B-32).")] = None,
    clip_pretrained: Annotated[Optional[str], typer.Option(help="CLIP weights of jobs that name none (default "
                                                           "openai; 'none' = random, for tests).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Steps of jobs that give none.", min=1)] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda or mps. With --ray each worker "
                                        "resolves it on its machine.")] = "auto",
    ray: Annotated[Optional[str], typer.Option(help="Run on Ray: 'local' starts a cluster on this machine; an "
                                               "ADDRESS (host:6379) or 'auto' joins a running one. Needs the [ray] "
                                               "extra.")] = None,
    cpus_per_worker: Annotated[int, typer.Option(help="CPU cores per Ray worker when there is no GPU (one worker "
                                                 "per GPU otherwise).", min=1)] = 1,
    workers: Annotated[Optional[int], typer.Option(help="Most Ray workers (default: one per GPU, or cores / "
                                                   "--cpus-per-worker).", min=1)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run every job of JOBS; each writes the run folder its command writes, as OUTDIR/ID.

    The whole file is checked before anything runs (a bad line: one error naming it). Jobs already
    complete in OUTDIR are skipped, so running the same command again resumes a killed batch. Each
    job's status, folder, seconds and error go to OUTDIR/batch.jsonl; a failed job does not stop the
    others, and the exit code is 1 if any failed. Prints the folder of each job done.
    """
    from clipstyle.batch.jobs import read_jobs
    from clipstyle.batch.runner import BatchConfig, run_jobs

    if ray is not None:
        from clipstyle.batch.ray_runner import import_ray

        if not ray.strip():
            raise UsageError("--ray needs 'local', 'auto' or a cluster address such as 10.0.0.1:6379")
        from clipstyle.optimize.devices import DEVICES

        if device.strip().lower() not in DEVICES and not device.strip().lower().startswith("cuda:"):
            raise UsageError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")
        import_ray()  # RayMissingError: one line, exit 1
    else:
        from clipstyle.optimize.devices import resolve_device

        resolve_device(device)  # an absent --device cuda: one usage error before anything runs
    if workers is not None and ray is None:
        raise UsageError("--workers needs --ray")
    defaults = {"network": network, "clip_model": clip_model, "clip_pretrained": clip_pretrained, "steps": steps}
    job_list = read_jobs(jobs, defaults)
    config = BatchConfig(outdir=outdir, batch_size=batch_size, device=device, ray=ray.strip() if ray else None,
                         cpus_per_worker=cpus_per_worker, workers=workers, quiet=quiet)

    def print_folder(job, entry: dict) -> None:  # each folder as its job completes, not all at the end
        if entry["status"] == "done":
            typer.echo(entry["folder"])

    summary = run_jobs(job_list, config, on_job=print_folder)
    failed = [e for e in summary.entries if e["status"] == "failed"]
    typer.echo(f"{len(summary.done)} done, {len(summary.resumed)} already complete, {len(failed)} failed "
               f"in {summary.seconds:.1f} s; manifest: {Path(outdir) / 'batch.jsonl'}", err=True)
    for entry in failed:
        typer.echo(f"failed: {entry['id']} (line {entry['line']}): {entry['error']}", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("batch")(batch_command)
