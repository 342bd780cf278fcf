"""``clipstyle direction global | sefa | pca``: real-time text edits in StyleSpace (StyleCLIP's global
directions) and directions found without labels (SeFa, GANSpace's PCA). The options are derived from the
workflows' settings (:mod:`clipstyle.workflows.global_edit`); the commands join the ``direction`` group."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from clipstyle.cli.derive import Front, workflow_command

_OUT = inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    Path | None, typer.Option("--out", help="Output .npz for the S direction on its own (for 'direction apply'); it is also in the run's latents.npz.")])
_OVERWRITE = inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
    bool, typer.Option("--overwrite", help="Replace --out if it exists.")])


def _global(settings, front: Front) -> None:
    """Edit LATENTS from SOURCE to TARGET with StyleCLIP's global direction (one forward pass per image).

    The channel relevance of the network and CLIP model is computed on first use (cached, resumable after
    Ctrl-C) unless --relevance gives a file (ours, StyleCLIP's fs3.npy, HyperStyle's delta_i_c.npy). Writes
    result.png, strip.png/strip.gif (alpha from -A to A), before.png, latents.npz (with the S direction:
    'direction apply' reads it) and run.json (the channels used) into a new run folder and prints its path.
    """
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.optimize.devices import resolve_device
    from clipstyle.optimize.progress import ProgressBar
    from clipstyle.workflows.registry import get_workflow

    out = front.extra.get("out")
    if out is not None:
        refuse_overwrite(out, front.extra.get("overwrite", False))
    workflow = get_workflow("direction-global")
    bars: list = []  # the progress bar appears only when a relevance is computed

    def callback(info, _images) -> None:
        if not bars:
            bars.append(ProgressBar("relevance (channels)", info.steps, enabled=not front.quiet).__enter__())
        bars[0].progress.update(bars[0].task, total=info.steps, completed=info.step + 1, terms="", rate="")

    try:
        run = workflow.run(settings, device=resolve_device(front.device), callback=callback, quiet=front.quiet)
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    folder = run.save(front.outdir)
    if out is not None:
        import numpy as np

        from clipstyle.io.files import atomic_save_npz

        with np.load(folder / "latents.npz", allow_pickle=False) as f:
            atomic_save_npz(out, s_direction=f["s_direction"], s_layout=f["s_layout"], relevance=f["relevance"])
    if not run.extra_json.get("relevance_complete", True):
        typer.echo("note: the relevance computation was stopped; the edit used the channels done so far "
                   "(run again to finish it)", err=True)
    if settings.report:
        from rich.console import Console
        from rich.table import Table

        table = Table("channel", "layer", "kind", "index", "resolution", "relevance",
                      title=f"{run.extra_json['channels_used']} channels used (beta {settings.beta})")
        for c in run.extra_json["channels"]:
            table.add_row(str(c["flat"]), c["layer"], c["kind"] if c["part"] == "mod" else f"{c['kind']} {c['part']}",
                          str(c["index"]), str(c["resolution"]), f"{c['relevance']:+.4f}")
        Console(stderr=True).print(table)
    typer.echo(str(folder))


def _unsupervised(name: str):
    def body(settings, front: Front) -> None:
        from clipstyle.optimize.devices import resolve_device
        from clipstyle.workflows.registry import get_workflow

        run = get_workflow(name).run(settings, device=resolve_device(front.device), quiet=front.quiet)
        folder = run.save(front.outdir)
        typer.echo(f"{len(run.extra_json['std'])} directions → {settings.out} (apply one with 'clipstyle direction "
                   f"apply LATENTS {settings.out} --component K --sigma S'); contact sheet: {folder / 'sheet.png'}",
                   err=True)
        typer.echo(str(folder))
    return body


global_command = workflow_command("direction-global", _global, extra=[_OUT, _OVERWRITE])
sefa_command = workflow_command("direction-sefa", _unsupervised("direction-sefa"),
                                doc="Find directions without labels with SeFa (eigenvectors of AᵀA of the chosen "
                                    "layers' modulation weights) → a GANSpace-layout file and a contact sheet.")
pca_command = workflow_command("direction-pca", _unsupervised("direction-pca"),
                               doc="Find directions without labels with GANSpace's PCA of sampled w → a GANSpace-"
                                   "layout file and a contact sheet.")


def register(direction_app: typer.Typer) -> None:
    """Add ``global``, ``sefa`` and ``pca`` to the ``direction`` group."""
    direction_app.command("global")(global_command)
    direction_app.command("sefa")(sefa_command)
    direction_app.command("pca")(pca_command)
