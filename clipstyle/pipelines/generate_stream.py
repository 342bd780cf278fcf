"""``generate`` for any number of seeds: images streamed to disk one at a time, with a progress bar.

:func:`clipstyle.pipelines.creative.generate` returns every image in memory (for the library and the UI);
:func:`generate_to` (the CLI's ``generate``) writes each ``seedNNNN.png``/``seedNNNN.npz`` as soon as it is
rendered into the run's staging folder, keeps only each seed's ``ws``/``z`` (for ``latents.npz``), the first
:data:`SHEET_IMAGES` images (``result.png``) and, with ``--grid``, what the grid needs; the memory and the disk
are estimated first (:mod:`clipstyle.optimize.resources`). Ctrl-C (or SIGTERM/SIGHUP) stops after the seed in
progress: the seeds done are published as a complete run folder (``run.json`` says how many) and the command
exits 130/143/129.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.pipelines.run import Run

__all__ = ["SHEET_IMAGES", "generate_to"]

#: Images shown in ``result.png`` (the first ones); ``--grid`` writes ``grid.png`` with all of them.
SHEET_IMAGES = 64


def generate_to(outdir: str | os.PathLike[str], settings: Any = None, /, *, G: Any = None, device: str = "auto",
                note: Callable[[str], None] | None = None, progress: bool = True, **options: Any) -> Path:
    """Render seeds like :func:`~clipstyle.pipelines.creative.generate` (the same ``GenerateSettings`` or keywords,
    the same files), streaming each image to disk (a progress bar on stderr when it is a terminal and ``progress``);
    returns the run folder ``outdir/generate-seeds-<seeds>[-NNNN]``.

    ``result.png`` is the grid of the first :data:`SHEET_IMAGES` images (all of them when there are fewer);
    ``grid.png`` (with ``grid``) holds every image.

    Raises:
        ResourceError: the seeds need more memory or disk than this machine has (before any image is made).
        SpecError, LabelError: as :func:`~clipstyle.pipelines.creative.generate`.
    """
    from clipstyle.io.files import make_run_dir
    from clipstyle.latents import save_latents
    from clipstyle.optimize.progress import ProgressBar
    from clipstyle.optimize.resources import check_resources, estimate_generate
    from clipstyle.pipelines.creative import _generate_setup, generate_images
    from clipstyle.render.files import make_grid, save_png
    from clipstyle.workflows.creative import GenerateSettings

    s = GenerateSettings.of(settings, **options)
    grid, seeds = s.grid, s.seeds
    G, seed_list, render, settings = _generate_setup(s, device, G, note)
    outdir = Path(outdir)
    check_resources(estimate_generate(len(seed_list), G, grid=grid), render["device"], outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    staging = outdir / f".staging-{os.getpid()}-generate"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        kept, everything, all_ws, zs, done = [], [], [], [], []
        interrupted = False
        show = progress and sys.stderr.isatty()  # a live bar on a terminal; logs and pipes get none
        with ProgressBar("generating", len(seed_list), enabled=show) as bar:
            try:
                for k, (s, img, item) in enumerate(generate_images(G, seed_list, **render), 1):
                    save_png(staging / f"seed{s:04d}.png", img)
                    save_latents(staging / f"seed{s:04d}.npz", item["ws"], z=item["z"], c=item["c"], meta=item["meta"])
                    if len(kept) < SHEET_IMAGES:
                        kept.append(img)
                    if grid:
                        everything.append(img)
                    all_ws.append(item["ws"].cpu())
                    zs.append(item["z"].cpu())
                    done.append(s)
                    bar.progress.update(bar.task, completed=k)
            except KeyboardInterrupt:  # the seeds done are kept; the CLI's guard exits 130/143/129
                interrupted = True
                if not done:
                    raise
        sheet = make_grid(kept)
        c = render["c"]
        settings = {**settings, "seeds_done": len(done), "interrupted": interrupted}
        run = Run(name=f"generate-seeds-{seeds}", result=None, settings=settings, network=G.describe(),
                  z=torch.cat(zs), c=c.expand(len(done), -1).cpu(), ws_=torch.cat(all_ws),
                  images_=np.stack(kept), result_image=sheet,
                  extra_images={"grid.png": make_grid(everything)} if grid else {})
        run.write_into(staging)
        target = make_run_dir(outdir, run.name)
        os.replace(staging, target)  # the claimed folder is empty: the run appears complete or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
