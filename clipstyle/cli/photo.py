"""Photo commands: ``align`` (FFHQ crop), ``encode`` (e4e), ``project`` (photo → latent, optional pivotal
tuning), ``invert-z`` (w → z), ``edit`` (photo or latent + prompt). Each is a thin caller of
:mod:`clipstyle.pipelines.photo`: parse, call the pipeline, save its run, print the folder. The constraints of the main command work here too, through the same
helpers (:mod:`clipstyle.latents.constraints`, :mod:`clipstyle.guidance.recipes`):

* ``--mix SOURCE:BLOCKS`` (``project``, ``edit``): those rows are fixed, bit-exactly, to the other latent
  during the projection / the edit;
* ``--blend NETWORK@RES[:SMOOTH]``: ``project`` projects into the blended network; ``edit`` *projects a photo
  into the base network A* (``--network``) and *edits and renders in the blend* (the blend's mapping and
  ``w_avg`` are A's, so the latent means the same in both). The saved ``latents.npz`` names A as its network
  and records the blend in its meta: pass the same ``--blend`` to edit or render it again;
* ``--recipe NAME`` (``edit``): the recipe's target text is the PROMPT when none is given, its source text
  the ``--source``, its blocks the ``--blocks``, its strength the ``--strength`` and its keep weight the
  ``--l2`` (:func:`clipstyle.guidance.recipes.keep_weight`); options given explicitly win.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clipstyle.cli.common import UsageError, fail
from clipstyle.cli.derive import Front, run_and_save, workflow_command
from clipstyle.workflows.registry import get_workflow

_KW = inspect.Parameter.KEYWORD_ONLY


def _out_param(help: str) -> list[inspect.Parameter]:  # noqa: A002
    return [inspect.Parameter("out", _KW, default=None, annotation=Annotated[Optional[Path], typer.Option(help=help)]),
            inspect.Parameter("overwrite", _KW, default=False, annotation=Annotated[bool, typer.Option(
                "--overwrite", help="Replace an existing --out file.")])]


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _no_face_is_runtime(func):
    """No face in the photo is a runtime failure (exit 1); a missing detector stays a usage error (2)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from clipstyle.inversion.align import AlignmentError, AlignmentUnavailable

        try:
            return func(*args, **kwargs)
        except AlignmentUnavailable:
            raise
        except AlignmentError as exc:
            raise fail(str(exc), 1) from None
    return wrapper


@_no_face_is_runtime
def _align(settings, front: Front) -> None:
    """Crop the largest face of PHOTO the FFHQ way (Karras et al. 2019, Appendix A) and print the file."""
    import numpy as np

    from clipstyle.io.files import refuse_overwrite
    from clipstyle.render.files import save_png

    photo = Path(settings.photo)
    out = front.extra["out"]
    target = out if out is not None else photo.with_name(f"{photo.stem}_aligned.png")
    if target.resolve() == photo.resolve():
        raise UsageError(f"--out {target} is the photo itself; choose another path")
    refuse_overwrite(target, front.extra["overwrite"])
    run = get_workflow("align").run(settings)
    if run.extra_json["faces"] > 1:
        typer.echo(f"found {run.extra_json['faces']} faces; aligned the largest", err=True)
    save_png(target, np.asarray(run.images[0]))
    typer.echo(str(target))


@_no_face_is_runtime
def _encode(settings, front: Front) -> None:
    """Encode PHOTO with e4e (one forward pass) into a run folder like project's (target.png, proj.png,
    latents.npz, run.json with PSNR) and print its path."""
    def summary(run: Any, folder: Path) -> None:
        m = run.extra_json["metrics"]
        typer.echo(f"PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.5f}", err=True)

    run_and_save(get_workflow("encode"), settings, front, progress=False, after=summary, notify=_echo_err)


@_no_face_is_runtime
def _project(settings, front: Front) -> None:
    """Project PHOTO into the generator: find the latent (and StyleGAN2 noise) that reproduces it.

    Writes target.png, proj.png, result.png (the projection, or the tuned image with --tune), progress.gif
    (target | projection), latents.npz (ws, the optimized noise maps, the network) and run.json (settings,
    final LPIPS/MSE/PSNR of result.png, the pivot's as projection_metrics) into a new folder under --outdir
    and prints its path. --init e4e --encoder E4E.pt starts from the e4e encoding; --tune then fine-tunes the
    generator around the result (PTI) and saves it as generator.safetensors, which latents.npz names so later
    commands use it. Edit the result with 'clipstyle edit --latents RUN/latents.npz "PROMPT"'.
    """
    def summary(run: Any, folder: Path) -> None:
        m = run.extra_json["metrics"]
        line = f"PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.5f}" + (f", LPIPS {m['lpips']:.4f}" if "lpips" in m else "")
        typer.echo(("tuned: " if "tune_metrics" in run.extra_json else "") + line, err=True)

    run_and_save(get_workflow("project"), settings, front, progress=False, after=summary, notify=_echo_err)


def _invert_z(settings, front: Front) -> None:
    """Find the z whose mapping gives the latent's w (W→Z inversion of the mapping network).

    Writes a NEW file with the latent's ws, the recovered z (one per latent; for a W+ latent the best single z,
    plus row_z with one z per styleblock) and prints the relative residual ‖mapping(z) − w‖/‖w‖.
    """
    from clipstyle.inversion.files import add_arrays
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents import save_latents
    from clipstyle.optimize.devices import resolve_device

    latents = Path(settings.latents)
    out = front.extra["out"]
    target = out if out is not None else latents.with_name(f"{latents.stem}_z.npz")
    if target.resolve() == latents.resolve():
        raise UsageError(f"--out {target} is the input file; choose another path (the input is never overwritten)")
    refuse_overwrite(target, front.extra["overwrite"])
    run = get_workflow("invert-z").run(settings, device=resolve_device(front.device), quiet=front.quiet)
    info = dict(run.extra_json)
    rows_differ = info.pop("rows_differ")
    save_latents(target, run.ws, z=run.z, c=run.c, meta=info)
    if run.extra_arrays:
        add_arrays(target, dict(run.extra_arrays))
    for note in info["notes"]:
        typer.echo(f"note: {note}", err=True)
    n = run.ws.shape[0]
    for i, r in enumerate(info["residual"]):
        label = f"latent {i}: " if n > 1 else ""
        kind = "best single z for all styleblocks" if rows_differ else "z"
        typer.echo(f"{label}{kind}: relative residual ‖mapping(z) − w‖/‖w‖ = {r:.3g}")
        if "row_residual" in run.extra_arrays:
            per_row = ", ".join(f"{x:.2g}" for x in run.extra_arrays["row_residual"][i].tolist())
            typer.echo(f"{label}one z per styleblock: residuals {per_row}")
    typer.echo(str(target))


@_no_face_is_runtime
def _edit(settings, front: Front) -> None:
    """Edit a photo (aligned, encoded, projected and tuned first, as asked) or a latent with a text PROMPT.

    Writes result.png (after), before_after.png, progress.gif, latents.npz and run.json into a new folder under
    --outdir and prints its path. The full real-photo path is
    'clipstyle edit photo.jpg "smiling" --align --encoder E4E.pt --tune --id-weights ARCFACE.pth'; without
    an optional file its stage falls back (said once). --recipe NAME applies a curated edit; --mix fixes
    styleblocks to another latent; --blend edits and renders in a blended network.
    """
    run_and_save(get_workflow("edit"), settings, front, progress=False, notify=_echo_err)


align_command = workflow_command("align", _align, outdir=None, device=False, extra=_out_param(
    "Output PNG (default: PHOTO_aligned.png beside the photo; the photo is never overwritten)."))
encode_command = workflow_command("encode", _encode)
project_command = workflow_command("project", _project)
invert_z_command = workflow_command("invert-z", _invert_z, outdir=None, extra=_out_param(
    "Where to write the result (default: NAME_z.npz next to the input; the input is never overwritten)."))
edit_command = workflow_command("edit", _edit)


def register(app: typer.Typer) -> None:
    """Add ``align``, ``encode``, ``project``, ``invert-z`` and ``edit`` to the clipstyle app."""
    app.command("align")(align_command)
    app.command("encode")(encode_command)
    app.command("project")(project_command)
    app.command("invert-z")(invert_z_command)
    app.command("edit")(edit_command)
