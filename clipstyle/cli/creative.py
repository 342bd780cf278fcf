"""Creative commands: ``styleblocks``, ``mix``, ``blend``, ``render``, ``interpolate``, ``direction …``, ``recipes``.

Latent sources everywhere are seeds (``42``, ``42@0.7``, ``0-3``) or latent ``.npz`` files
(``face.npz``, ``face.npz#1``); see :mod:`clipstyle.latents.constraints`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clipstyle.cli.common import UsageError, handle_errors
from clipstyle.cli.derive import Front, run_and_save, workflow_command
from clipstyle.workflows.registry import get_workflow

_KW = inspect.Parameter.KEYWORD_ONLY


def _out_params(default: Path | None, help: str) -> list[inspect.Parameter]:  # noqa: A002
    out_type = Path if default is not None else Optional[Path]
    return [inspect.Parameter("out", _KW, default=default, annotation=Annotated[out_type, typer.Option(help=help)]),
            inspect.Parameter("overwrite", _KW, default=False, annotation=Annotated[bool, typer.Option(
                help="Replace --out if it exists.")])]


def _grid(images):
    from clipstyle.pipelines.run import grid_of

    return grid_of(images)


def _save_npy(out: Path, direction) -> None:
    """Write a direction ``.npy`` (float32, no pickle) atomically."""
    import io

    import numpy as np

    from clipstyle.io.files import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, direction.numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out, buf.getvalue())


def _styleblocks(settings, front: Front) -> None:
    """Scale one styleblock (row of ws) at a time: a GIF per block and a contact sheet (rows = blocks, columns = factors)."""
    run_and_save(get_workflow("styleblocks"), settings, front)


def _mix(settings, front: Front) -> None:
    """Style-mixing grid (Karras et al. 2019, §3.1): cell (a, b) takes --blocks from column b, every other row from row a.

    Writes grid.png (top row: the column images, left column: the row images) and each mixed
    image as mix-ROW-COL.png with its latent mix-ROW-COL.npz.
    """
    run_and_save(get_workflow("mix"), settings, front)


def _blend(settings, front: Front) -> None:
    """Network blending (Pinkney & Adler 2020, 'toonify'): write a generator mixing A's low and B's high resolutions."""
    from clipstyle.generator.formats.writers import output_format, public_source, save_network
    from clipstyle.io.files import refuse_overwrite

    out, s = front.extra["out"], settings
    output_format(out)  # refuse an extension we cannot write before loading anything
    refuse_overwrite(out, front.extra["overwrite"])
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out does not exist: {out.parent}")
    G = get_workflow("blend").run(settings, device="cpu")
    for note in save_network(G, out, meta={"blend": {"a": public_source(s.network_a), "b": public_source(s.network_b),
                                                     "at": s.at, "smooth": s.smooth}}):
        typer.echo(f"note: {note}", err=True)
    typer.echo(str(out))


def _render(settings, front: Front) -> None:
    """Render a latent file (e.g. a projection) to an image, optionally in a blended network (photo → painting)."""
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.optimize.devices import resolve_device
    from clipstyle.render.files import image_format, save_image

    out = front.extra["out"]
    if out is None:
        p = Path(settings.latents.split("#")[0])
        base = p.parent / p.stem if p.suffix == ".npz" else Path(f"seeds-{settings.latents}")
        out = Path(f"{base}-{'blend' if settings.blend else 'render'}.png")
    image_format(out)  # the extension names the format written; an unknown one is refused before any work
    refuse_overwrite(out, front.extra["overwrite"])
    run = get_workflow("render").run(settings, device=resolve_device(front.device), quiet=front.quiet)
    save_image(out, run.result_image if run.result_image is not None else _grid(run.images))
    typer.echo(str(out))


def _interpolate(settings, front: Front) -> None:
    """Interpolate between latents → interpolation.gif (+ .mp4), latents.npz with every frame's ws."""
    from clipstyle.render.files import VIDEO_INSTALL_HINT, save_mp4, video_available

    def mp4(run: Any, folder: Path) -> None:
        if not front.extra["mp4"]:
            return
        if video_available():
            save_mp4(folder / "interpolation.mp4", list(run.images), fps=settings.fps)
        else:
            typer.echo(f"note: no MP4 written: it needs the imageio-ffmpeg package ({VIDEO_INSTALL_HINT})", err=True)

    run_and_save(get_workflow("interpolate"), settings, front, after=mp4)


def _direction_apply(settings, front: Front) -> None:
    """Walk a latent along a direction → direction.gif, strip.png, latents.npz."""
    run_and_save(get_workflow("direction-apply"), settings, front)


def _direction_learn(settings, front: Front) -> None:
    """Learn an attribute direction from two sets of latents (InterFaceGAN: the unit normal of a linear boundary)."""
    from clipstyle.io.files import refuse_overwrite

    out = front.extra["out"]
    refuse_overwrite(out, front.extra["overwrite"])
    res = get_workflow("direction-learn").run(settings)
    _save_npy(out, res.direction)
    typer.echo(f"held-out accuracy {res.test_accuracy:.1%} ({res.n_test} latents), train {res.train_accuracy:.1%} "
               f"({res.n_train}); direction {list(res.direction.shape)} → {out}")


def _direction_from_text(settings, front: Front) -> None:
    """Find a W+ direction that turns SOURCE into TARGET across several samples (directional CLIP loss)."""
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.optimize.devices import resolve_device
    from clipstyle.optimize.progress import ProgressBar

    out = front.extra["out"]
    refuse_overwrite(out, front.extra["overwrite"])
    with ProgressBar("direction", settings.steps, enabled=not front.quiet) as bar:
        res = get_workflow("direction-from-text").run(settings, device=resolve_device(front.device), callback=bar,
                                                      quiet=front.quiet, log=list(front.log) or None)
    _save_npy(out, res.direction)
    typer.echo(f"direction {list(res.direction.shape)} → {out} (the optimized edit is strength {res.strength:.3g}; "
               f"final loss {res.history[-1]:.4f}; ran in {res.precision})")


_MP4 = inspect.Parameter("mp4", _KW, default=False, annotation=Annotated[bool, typer.Option(
    help="Also write an MP4 (needs imageio-ffmpeg).")])

styleblocks_command = workflow_command("styleblocks", _styleblocks)
mix_command = workflow_command("mix", _mix)
blend_command = workflow_command("blend", _blend, outdir=None, device=False, extra=_out_params(
    Path("blended.safetensors"), "Output network: .safetensors (clipstyle) or .pt (rosinality, StyleGAN2)."))
render_command = workflow_command("render", _render, outdir=None, extra=_out_params(
    None, "Output image, .png/.jpg/.webp… by extension (default: LATENTS-render.png beside the file; a grid "
          "when there are several latents)."))
interpolate_command = workflow_command("interpolate", _interpolate, extra=[_MP4])

direction_app = typer.Typer(help="Latent directions: apply one, learn one from labelled latents, or find one from text.",
                            no_args_is_help=True)
direction_app.command("apply")(workflow_command("direction-apply", _direction_apply))
direction_app.command("learn")(workflow_command("direction-learn", _direction_learn, outdir=None, device=False,
                                                extra=_out_params(Path("learned-direction.npy"),
                                                                  "Output .npy direction.")))
direction_app.command("from-text")(workflow_command("direction-from-text", _direction_from_text, outdir=None,
                                                    extra=_out_params(Path("text-direction.npy"),
                                                                      "Output .npy [num_ws, w_dim].")))


@handle_errors
def recipes_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the curated edit recipes (use one with --recipe NAME)."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.table import Table

    from clipstyle.guidance.recipes import list_recipes

    items = list_recipes()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in items], indent=2))
        return
    table = Table("name", "category", "edit", "source → target", "blocks", "strengths")
    for i, col in enumerate(table.columns):  # fit 80 columns: names and block sets whole, long words folded, never "…"
        col.no_wrap, col.overflow = i in (0, 4), "fold"
    for r in items:
        table.add_row(r.name, r.category, r.description, f"{r.source} → {r.target}", r.blocks,
                      f"{r.strengths[0]:g}:{r.strengths[1]:g}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the clipstyle app."""
    app.command("styleblocks")(styleblocks_command)
    app.command("mix")(mix_command)
    app.command("blend")(blend_command)
    app.command("render")(render_command)
    app.command("interpolate")(interpolate_command)
    app.command("recipes")(recipes_command)
    from clipstyle.cli import direction_extra

    direction_extra.register(direction_app)
    app.add_typer(direction_app, name="direction")
