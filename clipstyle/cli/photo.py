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

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clipstyle.cli.common import UsageError, fail, handle_errors, resolve_device
from clipstyle.cli.text import ClipModelOpt, ClipPretrainedOpt, DeviceOpt

# -- options shared by `project` and `edit` (projection settings) -------------------------------------------------
OptNetwork = Annotated[Optional[str], typer.Option(
    "--network", "-n", help="Generator: an alias (ffhq, metfaces, sg3-ffhq-r…; see 'clipstyle networks'), a checkpoint "
    "path, or a file:// / https:// URL. Default: the network named in the latent file, else ffhq.")]
OptPerceptual = Annotated[str, typer.Option(help="Perceptual loss: lpips (VGG16 LPIPS, Zhang et al. 2018; weights "
                                            "downloaded once) or none (pixel MSE only).")]
OptLpipsWeights = Annotated[Optional[str], typer.Option(help="Local LPIPS weights instead of downloading: a folder "
                                                        "with vgg16-397923af.pth and vgg.pth, or the two files "
                                                        "comma-separated.")]
OptMse = Annotated[Optional[float], typer.Option(help="Weight of the pixel MSE term (default 0 with lpips, 1 with "
                                                 "--perceptual none).", min=0)]
OptNoiseReg = Annotated[float, typer.Option(help="Weight of the StyleGAN2 noise regularization (multi-scale "
                                            "autocorrelation of the optimized noise maps).", min=0)]
OptCrop = Annotated[bool, typer.Option("--crop/--no-crop", help="Center-crop the photo to a square first (default); "
                                       "--no-crop squashes the whole photo to a square.")]
OptAlign = Annotated[bool, typer.Option("--align", help="Crop the largest face the FFHQ way from dlib's 68 landmarks "
                                        "(offline; needs pip install clipstyle[align]).")]
OptEncoder = Annotated[Optional[Path], typer.Option(help="e4e checkpoint (e4e_ffhq_encode.pt): encode the photo "
                                                    "first; its decoder is the network unless --network is given.")]
OptIdWeights = Annotated[Optional[Path], typer.Option(help="ArcFace IR-SE50 weights (model_ir_se50.pth): report the "
                                                      "identity similarity to the photo (and, in edit, keep it).")]
OptTune = Annotated[bool, typer.Option("--tune", help="Pivotal tuning (PTI): fine-tune the synthesis weights around "
                                       "the projection; the tuned generator is saved beside latents.npz.")]
OptTuneSteps = Annotated[int, typer.Option(help="Pivotal tuning steps (paper: 350).", min=1)]
OptTuneLr = Annotated[float, typer.Option(help="Pivotal tuning learning rate (paper: 3e-4).", min=0)]
OptClass = Annotated[Optional[str], typer.Option("--class", help="Class label(s) for conditional networks: K, K1,K2,… (sum), …@S (scaled) or a .npy vector.")]
OptOutdir = Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")]
OptSaveEvery = Annotated[int, typer.Option(help="Keep a GIF frame every N steps.", min=1)]
OptQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
OptSeed = Annotated[int, typer.Option(help="Seed of the w statistics / w-noise (projection) and of the cutouts (edit).")]
OptMix = Annotated[Optional[list[str]], typer.Option(help="Style mixing constraint SOURCE:BLOCKS (repeatable): fix "
                                                "those rows to another latent, e.g. 42:0-3, 42@0.7:coarse, "
                                                "face.npz:fine.")]


# -- commands -----------------------------------------------------------------------------------------------------
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


def _report(run: Any) -> None:
    if run.interrupted:
        typer.echo(f"interrupted after {run.result.steps_done} steps; kept the best result so far", err=True)


@handle_errors
@_no_face_is_runtime
def align_command(
    photo: Annotated[Path, typer.Argument(help="The photo (the largest face is aligned).")],
    size: Annotated[int, typer.Option(help="Output side in pixels (FFHQ: 1024).", min=8)] = 1024,
    out: Annotated[Optional[Path], typer.Option(help="Output PNG (default: PHOTO_aligned.png beside the photo; "
                                                "the photo is never overwritten).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Crop the largest face of PHOTO the FFHQ way (Karras et al. 2019, Appendix A) and print the file."""
    import numpy as np

    from clipstyle.io.files import refuse_overwrite
    from clipstyle.pipelines.align import align
    from clipstyle.render.files import save_png

    target = out if out is not None else photo.with_name(f"{photo.stem}_aligned.png")
    if target.resolve() == photo.resolve():
        raise UsageError(f"--out {target} is the photo itself; choose another path")
    refuse_overwrite(target, overwrite)
    run = align(photo, size=size)
    if run.extra_json["faces"] > 1:
        typer.echo(f"found {run.extra_json['faces']} faces; aligned the largest", err=True)
    save_png(target, np.asarray(run.images[0]))
    typer.echo(str(target))


@handle_errors
@_no_face_is_runtime
def encode_command(
    photo: Annotated[Path, typer.Argument(help="The photo to encode.")],
    encoder: Annotated[Optional[Path], typer.Option(help="e4e checkpoint (e4e_ffhq_encode.pt; required).")] = None,
    network: OptNetwork = None,
    crop: OptCrop = True,
    align: OptAlign = False,
    id_weights: OptIdWeights = None,
    outdir: OptOutdir = Path("out"),
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Encode PHOTO with e4e (one forward pass) into a run folder like project's (target.png, proj.png,
    latents.npz, run.json with PSNR) and print its path."""
    from clipstyle.pipelines.photo import encode

    if encoder is None:
        raise UsageError("encode needs --encoder E4E.pt (the e4e checkpoint, e.g. e4e_ffhq_encode.pt)")
    run = encode(photo, encoder=encoder, network=network, crop=crop, align=align, id_weights=id_weights,
                 device=resolve_device(device), quiet=quiet, log=_echo_err)
    run_dir = run.save(outdir)
    m = run.extra_json["metrics"]
    typer.echo(f"PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.5f}", err=True)
    typer.echo(str(run_dir))


@handle_errors
@_no_face_is_runtime
def project_command(
    photo: Annotated[Path, typer.Argument(help="The photo to project (any size; RGBA, grayscale, 16-bit and EXIF "
                                          "orientation are handled).")],
    network: OptNetwork = None,
    steps: Annotated[int, typer.Option(help="Optimization steps (StyleGAN2 paper: 1000).", min=1)] = 1000,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (ramped up over 5%, cosine down over the last "
                                      "25% of the steps).")] = 0.1,
    space: Annotated[str, typer.Option(help="w: one w for all styleblocks (NVIDIA's projector); w+: one per "
                                       "styleblock (Image2StyleGAN; first half in W, then per row).")] = "w",
    perceptual: OptPerceptual = "lpips",
    lpips_weights: OptLpipsWeights = None,
    mse: OptMse = None,
    noise_reg: OptNoiseReg = 1e5,
    crop: OptCrop = True,
    align: OptAlign = False,
    class_idx: OptClass = None,
    mix: OptMix = None,
    blend: Annotated[Optional[str], typer.Option(help="Project into a blended network NETWORK@RES[:SMOOTH]: layers "
                                                 "up to RES from --network, the rest from NETWORK.")] = None,
    init: Annotated[str, typer.Option(help="Start latent: mean (μ_w) or e4e (the --encoder's encoding).")] = "mean",
    encoder: OptEncoder = None,
    tune: OptTune = False,
    tune_steps: OptTuneSteps = 350,
    tune_lr: OptTuneLr = 3e-4,
    id_weights: OptIdWeights = None,
    seed: OptSeed = 0,
    save_every: OptSaveEvery = 10,
    outdir: OptOutdir = Path("out"),
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Project PHOTO into the generator: find the latent (and StyleGAN2 noise) that reproduces it.

    Writes target.png, proj.png (= result.png), progress.gif (target | projection), latents.npz (ws, the
    optimized noise maps, the network) and run.json (settings, final LPIPS/MSE/PSNR) into a new folder under
    --outdir and prints its path. --init e4e --encoder E4E.pt starts from the e4e encoding; --tune then
    fine-tunes the generator around the result (PTI) and saves it as generator.safetensors, which latents.npz
    names so later commands use it. Edit the result with 'clipstyle edit --latents RUN/latents.npz "PROMPT"'.
    """
    from clipstyle.pipelines.photo import project

    run = project(photo, network=network, steps=steps, lr=lr, space=space, perceptual=perceptual,
                  lpips_weights=lpips_weights, mse=mse, noise_reg=noise_reg, crop=crop, align=align,
                  class_idx=class_idx, mix=mix, blend=blend, init=init, encoder=encoder, tune=tune,
                  tune_steps=tune_steps, tune_lr=tune_lr, id_weights=id_weights, seed=seed, save_every=save_every,
                  device=resolve_device(device), quiet=quiet, log=_echo_err)
    run_dir = run.save(outdir)
    _report(run)
    m = run.extra_json["metrics"]
    summary = f"PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.5f}" + (f", LPIPS {m['lpips']:.4f}" if "lpips" in m else "")
    typer.echo(summary, err=True)
    typer.echo(str(run_dir))


@handle_errors
def invert_z_command(
    latents: Annotated[Path, typer.Argument(help="A latent .npz (ours, or NVIDIA's projected_w.npz).")],
    network: OptNetwork = None,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the result (default: NAME_z.npz next to the "
                                                "input; the input is never overwritten).")] = None,
    truncation: Annotated[Optional[float], typer.Option(help="The truncation psi the latent was made with (undone "
                                                       "first; default: the one recorded in the file, else 1).")] = None,
    truncation_cutoff: Annotated[Optional[int], typer.Option(help="Rows from this index on were not truncated.")] = None,
    class_idx: OptClass = None,
    refine_steps: Annotated[int, typer.Option(help="Levenberg–Marquardt refinement iterations (0 = algebraic "
                                              "solution only).", min=0)] = 30,
    starts: Annotated[int, typer.Option(help="Random restarts (and basin hops) when LM stops at a local minimum "
                                        "(0 = none).", min=0)] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Find the z whose mapping gives the latent's w (W→Z inversion of the mapping network).

    Writes a NEW file with the latent's ws, the recovered z (one per latent; for a W+ latent the best single z,
    plus row_z with one z per styleblock) and prints the relative residual ‖mapping(z) − w‖/‖w‖.
    """
    from clipstyle.inversion.files import add_arrays
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents import save_latents
    from clipstyle.pipelines.photo import invert_z

    target = out if out is not None else latents.with_name(f"{latents.stem}_z.npz")
    if target.resolve() == latents.resolve():
        raise UsageError(f"--out {target} is the input file; choose another path (the input is never overwritten)")
    refuse_overwrite(target, overwrite)
    run = invert_z(latents, network=network, truncation=truncation, truncation_cutoff=truncation_cutoff,
                   class_idx=class_idx, refine_steps=refine_steps, starts=starts, device=resolve_device(device),
                   quiet=quiet)
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


@handle_errors
@_no_face_is_runtime
def edit_command(
    photo_or_latents: Annotated[Optional[str], typer.Argument(
        help="A photo to project first, or a latent .npz (ours or NVIDIA's projected_w.npz).",
        show_default=False)] = None,
    prompt: Annotated[Optional[str], typer.Argument(help="The edit, e.g. \"a smiling face\" (with --latents the only "
                                                    "argument; optional with --recipe).", show_default=False)] = None,
    latents: Annotated[Optional[Path], typer.Option(help="Start from this latent file instead of a photo (edited in "
                                                    "the tuned generator it names, if any).")] = None,
    source: Annotated[Optional[str], typer.Option(help="Text describing the unedited photo: the edit direction is "
                                                  "source → prompt (StyleGAN-NADA's directional CLIP loss). "
                                                  "Default: the recipe's source, else \"a face\".",
                                                  show_default=False)] = None,
    recipe: Annotated[Optional[str], typer.Option(help="A curated edit ('clipstyle recipes'): its target text (when "
                                                  "PROMPT is omitted), source text, blocks, strength and keep weight "
                                                  "(as --l2) are the defaults; options given explicitly win.")] = None,
    network: OptNetwork = None,
    clip_model: ClipModelOpt = "ViT-B-32",
    clip_pretrained: ClipPretrainedOpt = "openai",
    steps: Annotated[int, typer.Option(help="Edit optimization steps.", min=1)] = 100,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate of the edit.")] = 0.1,
    blocks: Annotated[Optional[str], typer.Option(help="Styleblocks to edit, e.g. 0-3,8 or coarse,middle (default: "
                                                  "the recipe's, else all); the others stay exactly at the start.",
                                                  show_default=False)] = None,
    strength: Annotated[Optional[float], typer.Option(help="Weight of the directional CLIP loss (default: the "
                                                      "recipe's strength, else 1).", min=0, show_default=False)] = None,
    l2: Annotated[Optional[float], typer.Option(help="Weight of ‖w − w_start‖² (StyleCLIP's L2 term; default: the "
                                                "recipe's keep weight, else 0.008).", min=0,
                                                show_default=False)] = None,
    keep: Annotated[float, typer.Option(help="Weight of the keep-the-look term (CLIP image similarity to the "
                                        "unedited image).", min=0)] = 0.3,
    mix: OptMix = None,
    blend: Annotated[Optional[str], typer.Option(help="Edit and render in a blended network NETWORK@RES[:SMOOTH] "
                                                 "(layers up to RES from --network, the rest from NETWORK); a photo "
                                                 "is still projected into --network.")] = None,
    cutouts: Annotated[Optional[int], typer.Option(help="Random crops per image fed to CLIP (default 32 on GPU, 8 on "
                                                   "CPU; 0 = whole image only).", min=0)] = None,
    project_steps: Annotated[int, typer.Option(help="Projection steps (photo input).", min=1)] = 1000,
    project_lr: Annotated[float, typer.Option(help="Projection learning rate (photo input).")] = 0.1,
    project_space: Annotated[str, typer.Option(help="Projection space, w or w+ (photo input).")] = "w",
    perceptual: OptPerceptual = "lpips",
    lpips_weights: OptLpipsWeights = None,
    mse: OptMse = None,
    noise_reg: OptNoiseReg = 1e5,
    crop: OptCrop = True,
    align: OptAlign = False,
    encoder: OptEncoder = None,
    tune: OptTune = False,
    tune_steps: OptTuneSteps = 350,
    tune_lr: OptTuneLr = 3e-4,
    id_weights: OptIdWeights = None,
    id_lambda: Annotated[float, typer.Option(help="Weight of the ArcFace identity loss 1 − similarity(x, photo) "
                                             "(with --id-weights).", min=0)] = 0.1,
    class_idx: OptClass = None,
    seed: OptSeed = 0,
    save_every: OptSaveEvery = 10,
    outdir: OptOutdir = Path("out"),
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Edit a photo (aligned, encoded, projected and tuned first, as asked) or a latent with a text PROMPT.

    Writes result.png (after), before_after.png, progress.gif, latents.npz and run.json into a new folder under
    --outdir and prints its path. The full real-photo path is
    'clipstyle edit photo.jpg "smiling" --align --encoder E4E.pt --tune --id-weights ARCFACE.pth'; without
    an optional file its stage falls back (said once). --recipe NAME applies a curated edit; --mix fixes
    styleblocks to another latent; --blend edits and renders in a blended network.
    """
    from clipstyle.pipelines.photo import edit

    rec = None
    if recipe is not None:
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(recipe)
    start_path, prompt = _edit_inputs(photo_or_latents, prompt, latents, rec)
    run = edit(start_path, prompt, source=source, recipe=recipe, network=network, clip_model=clip_model,
               clip_pretrained=clip_pretrained, steps=steps, lr=lr, blocks=blocks, strength=strength, l2=l2, keep=keep,
               mix=mix, blend=blend, cutouts=cutouts, project_steps=project_steps, project_lr=project_lr,
               project_space=project_space, perceptual=perceptual, lpips_weights=lpips_weights, mse=mse,
               noise_reg=noise_reg, crop=crop, align=align, class_idx=class_idx, encoder=encoder, tune=tune,
               tune_steps=tune_steps, tune_lr=tune_lr, id_weights=id_weights, id_lambda=id_lambda, seed=seed,
               save_every=save_every, device=resolve_device(device), quiet=quiet, log=_echo_err)
    run_dir = run.save(outdir)
    _report(run)
    typer.echo(str(run_dir))


def _edit_inputs(photo_or_latents: str | None, prompt: str | None, latents: Path | None,
                 rec: Any) -> tuple[Path, str]:
    """``(start path, prompt)`` from the positional arguments, ``--latents`` and the recipe (whose target text
    is the prompt when none, or an empty one, is given). UsageError: a missing input or prompt, or both a
    photo and --latents."""
    given = [a for a in (photo_or_latents, prompt) if a is not None]
    if latents is not None:
        if len(given) > 1:
            raise UsageError("give either a photo or --latents FILE, not both (usage: clipstyle edit --latents "
                             "FILE \"PROMPT\")")
        start_path, text = latents, (given[0] if given else None)
    else:
        if not given:
            raise UsageError("missing PHOTO_OR_LATENTS: clipstyle edit PHOTO \"PROMPT\" (or --latents FILE)")
        start_path, text = Path(given[0]), (given[1] if len(given) > 1 else None)
    if (text is None or not text.strip()) and rec is not None:
        return start_path, rec.target
    if text is None:
        raise UsageError("missing PROMPT: clipstyle edit PHOTO_OR_LATENTS \"PROMPT\" (or --recipe NAME)")
    if not text.strip():
        raise UsageError("the prompt is empty: say what the edit should do, e.g. \"a smiling face\"")
    return start_path, text


def register(app: typer.Typer) -> None:
    """Add ``align``, ``encode``, ``project``, ``invert-z`` and ``edit`` to the clipstyle app."""
    app.command("align")(align_command)
    app.command("encode")(encode_command)
    app.command("project")(project_command)
    app.command("invert-z")(invert_z_command)
    app.command("edit")(edit_command)
