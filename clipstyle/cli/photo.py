"""Photo commands: ``project`` (photo → latent), ``invert-z`` (w → z), ``edit`` (photo or latent + prompt).

Each command is assembled from small helpers (load the network, the target, the perceptual model, the start
latent, the CLIP guide; save the run). The constraints of the main command work here too, through the same
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

from clipstyle.cli.common import UsageError, class_vector, handle_errors, resolve_device
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
OptAlign = Annotated[bool, typer.Option("--align", help="Crop the face the FFHQ way from facial landmarks (needs "
                                        "pip install clipstyle[align]).")]
OptClass = Annotated[Optional[int], typer.Option("--class", help="Class label for conditional networks.")]
OptOutdir = Annotated[Path, typer.Option(help="Folder under which a new run folder is created.")]
OptSaveEvery = Annotated[int, typer.Option(help="Keep a GIF frame every N steps.", min=1)]
OptQuiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
OptSeed = Annotated[int, typer.Option(help="Seed of the w statistics / w-noise (projection) and of the cutouts (edit).")]
OptMix = Annotated[Optional[list[str]], typer.Option(help="Style mixing constraint SOURCE:BLOCKS (repeatable): fix "
                                                "those rows to another latent, e.g. 42:0-3, 42@0.7:coarse, "
                                                "face.npz:fine.")]


# -- small building blocks ----------------------------------------------------------------------------------------
def load_network(network: str | None, latents_meta: dict[str, Any] | None, dev: str, quiet: bool) -> Any:
    """The generator: ``--network``, else the one recorded in a latent file's meta, else ``ffhq``."""
    from clipstyle.generator import load_generator

    source = network or (latents_meta or {}).get("network") or "ffhq"
    return load_generator(str(source), device=dev, progress=not quiet)


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON meta of a latent file (``{}`` when it has none). LatentFileError: missing or not an npz."""
    import json

    import numpy as np

    from clipstyle.latents import LatentFileError

    if not path.is_file():
        raise LatentFileError(f"no such latent file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            raw = str(data["meta"]) if "meta" in data.files else "{}"
    except Exception:  # noqa: BLE001 - any failure means "not a latent file"
        raise LatentFileError(f"{path} is not a readable .npz latent file") from None
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def load_target(photo: Path, G: Any, crop: bool, align: bool, dev: str) -> Any:
    """The photo as a target ``[1, C, R, R]`` in [-1, 1] on ``dev`` (EXIF, alpha, gray, 16-bit: see images.py)."""
    from clipstyle.inversion.project import prepare_target
    from clipstyle.io.images import image_to_tensor, load_image, load_image_array

    if align:
        from clipstyle.inversion.align import align_face

        img = align_face(load_image(photo), G.img_resolution, device=dev)
        tensor = image_to_tensor(img, G.img_resolution, crop=True)
    else:
        tensor = image_to_tensor(load_image_array(photo), G.img_resolution, crop=crop)
    return prepare_target(tensor, G).to(dev)


def load_perceptual(kind: str, weights: str | None, dev: str, quiet: bool) -> Any:
    """LPIPS for ``--perceptual lpips`` (downloaded once, or ``--lpips-weights``), None for ``none``."""
    kind = kind.strip().lower()
    if kind == "none":
        if weights:
            raise UsageError("--lpips-weights was given with --perceptual none")
        return None
    if kind != "lpips":
        raise UsageError(f"--perceptual must be lpips or none, got {kind!r}")
    from clipstyle.inversion.lpips import load_lpips

    return load_lpips(weights, device=dev, progress=not quiet)


def projection_config(steps: int, lr: float, space: str, perceptual: Any, mse: float | None, noise_reg: float,
                      seed: int, save_every: int) -> Any:
    from clipstyle.inversion.project import ProjectConfig

    space = space.strip().lower()
    if space not in ("w", "w+"):
        raise UsageError(f"--space must be w or w+, got {space!r}")
    mse = (0.0 if perceptual is not None else 1.0) if mse is None else mse
    if perceptual is None and mse <= 0:
        raise UsageError("--perceptual none needs --mse > 0: there would be nothing to project by")
    return ProjectConfig(steps=steps, lr=lr, space=space, mse=mse, noise_reg=noise_reg, seed=seed,
                         save_every=save_every)


def run_projection(G: Any, target: Any, cfg: Any, perceptual: Any, c: Any, quiet: bool,
                   mix: dict[int, Any] | None = None) -> Any:
    from clipstyle.inversion.project import project
    from clipstyle.optimize.progress import ProgressBar

    with ProgressBar("projecting", cfg.steps, enabled=not quiet) as bar:
        return project(G, target, cfg, perceptual=perceptual, c=c if G.c_dim > 0 else None, mix=mix or None,
                       callbacks=[bar])


def check_blend_spec(blend: str | None) -> None:
    """Fail on a malformed ``--blend`` before anything slow is loaded (SpecError)."""
    if blend is not None:
        from clipstyle.latents.constraints import parse_blend_spec

        parse_blend_spec(blend)


def with_blend(G: Any, blend: str | None, dev: str, quiet: bool) -> Any:
    """``G`` itself, or the blend ``NETWORK@RES[:SMOOTH]`` of ``G`` with another network (G unchanged)."""
    if not blend:
        return G
    from clipstyle.latents.constraints import blend_from_spec

    return blend_from_spec(G, blend, dev, progress=not quiet)


def record_base_network(path: Path, base: Any, blend: str | None) -> None:
    """After a run in a blend: the latent file names the base network A (whose mapping made its W space) and
    records the blend spec, so 'clipstyle edit --latents FILE' loads A (add the same --blend to edit in it)."""
    if not blend:
        return
    from clipstyle.inversion.files import add_arrays

    add_arrays(path, {}, {"network": base.describe().get("source"), "blend": blend})


def save_noise(path: Path, noise: dict[str, Any]) -> None:
    """Add the optimized noise maps (``noise_0``…, names in ``meta['noise']``) to a saved latent file."""
    if not noise:
        return
    from clipstyle.inversion.files import add_arrays
    from clipstyle.inversion.noise import noise_arrays

    arrays, names = noise_arrays(noise)
    add_arrays(path, arrays, {"noise": names})


def side_by_side_frames(left: Any, frames: Any) -> list[Any]:
    """GIF frames: the fixed image ``left`` (uint8 [H, W, C]) beside each frame batch ([N, H, W, C])."""
    from clipstyle.pipelines.runfolder import grid_of
    from clipstyle.render.files import side_by_side

    return [side_by_side(left, grid_of(f)) for f in frames]


def uint8_image(x: Any) -> Any:
    from clipstyle.pipelines.runfolder import grid_of
    from clipstyle.render.files import to_uint8

    return grid_of(to_uint8(x))


def start_from_latents(path: Path, G: Any, dev: str) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """``(ws [N, num_ws, w_dim], noise maps, c or None, meta)`` from a latent file (ours or NVIDIA's)."""
    import torch

    from clipstyle.inversion.noise import read_noise
    from clipstyle.latents import load_latents

    lf = load_latents(path, num_ws=G.num_ws, w_dim=G.w_dim)
    noise = read_noise(path, G, lf.meta.get("noise"))
    c = torch.from_numpy(lf.c).to(dev) if lf.c is not None and lf.c.size and G.c_dim > 0 else None
    return torch.from_numpy(lf.ws).to(dev), noise, c, lf.meta


def build_guide(clip_model: str, clip_pretrained: str, dev: str, cutouts: int | None) -> tuple[Any, Any, int]:
    from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts

    num = cutouts if cutouts is not None else (32 if dev.startswith("cuda") else 8)
    guide = CLIPGuide(clip_model, None if clip_pretrained.strip().lower() == "none" else clip_pretrained, device=dev)
    return guide, Cutouts(CutoutConfig(num_cutouts=num), guide.input_size), num


# -- commands -----------------------------------------------------------------------------------------------------
@handle_errors
def project_command(
    photo: Annotated[Path, typer.Argument(help="The photo to project (any size; RGBA, grayscale, 16-bit and EXIF "
                                          "orientation are handled).")],
    network: OptNetwork = None,
    steps: Annotated[int, typer.Option(help="Optimization steps (StyleGAN2 paper: 1000).", min=1)] = 1000,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (ramped up over 5%, cosine down over the last "
                                      "25% of the steps).")] = 0.1,
    space: Annotated[str, typer.Option(help="w: one w for all styleblocks (NVIDIA's projector); w+: one per "
                                       "styleblock (Image2StyleGAN; closer fits, less editable).")] = "w",
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
    seed: OptSeed = 0,
    save_every: OptSaveEvery = 10,
    outdir: OptOutdir = Path("out"),
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Project PHOTO into the generator: find the latent (and StyleGAN2 noise) that reproduces it.

    Writes target.png, proj.png (= result.png), progress.gif (target | projection), latents.npz (ws, the
    optimized noise maps, the network) and run.json (settings, final LPIPS/MSE/PSNR) into a new folder under
    --outdir and prints its path. Edit the result with 'clipstyle edit --latents RUN/latents.npz "PROMPT"'.
    --mix fixes styleblocks to another latent during the projection; --blend projects into a blended network
    (latents.npz then names --network and records the blend: give the same --blend to edit).
    """
    from clipstyle.io.files import make_run_dir
    from clipstyle.io.images import load_image_array
    from clipstyle.latents.constraints import constraint_rows
    from clipstyle.pipelines.runfolder import save_run
    from clipstyle.render.files import save_png

    dev = resolve_device(device)
    load_image_array(photo)  # a missing or broken photo fails before any network is loaded
    check_blend_spec(blend)
    perceptual_model = load_perceptual(perceptual, lpips_weights, dev, quiet)
    cfg = projection_config(steps, lr, space, perceptual_model, mse, noise_reg, seed, save_every)
    base = load_network(network, None, dev, quiet)
    c = class_vector(base.c_dim, class_idx, 1, dev)
    _, mixed = constraint_rows(base, None, mix or [], None, dev, c)
    G = with_blend(base, blend, dev, quiet)
    target = load_target(photo, G, crop, align, dev)
    result = run_projection(G, target, cfg, perceptual_model, c, quiet, mix=mixed)

    run_dir = make_run_dir(outdir, f"proj-{photo.stem}")
    target_u8, proj_u8 = uint8_image(result.target), uint8_image(result.image)
    settings = {"command": "project", "photo": str(photo), "network": network or "ffhq", "steps": steps, "lr": lr,
                "space": cfg.space, "perceptual": perceptual, "lpips_weights": lpips_weights, "mse": cfg.mse,
                "noise_reg": noise_reg, "crop": crop, "align": align, "class": class_idx, "seed": seed,
                "w_avg_samples": cfg.w_avg_samples, "save_every": save_every, "device": dev,
                "mix": list(mix or []), "mixed_rows": sorted(mixed), "blend": blend}
    extra = {"metrics": result.metrics, "w_std": result.w_std, "noise_maps": list(result.noise)}
    paths = save_run(run_dir, result.run, settings, G.describe(), extra_json=extra, c=c, result_image=proj_u8,
                     gif_frames=side_by_side_frames(target_u8, result.run.frames))
    save_noise(paths["latents"], result.noise)
    record_base_network(paths["latents"], base, blend)
    save_png(run_dir / "target.png", target_u8)
    save_png(run_dir / "proj.png", proj_u8)
    if result.run.interrupted:
        typer.echo(f"interrupted after {result.run.steps_done} steps; kept the best result so far", err=True)
    m = result.metrics
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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Find the z whose mapping gives the latent's w (W→Z inversion of the mapping network).

    Writes a NEW file with the latent's ws, the recovered z (one per latent; for a W+ latent the best single z,
    plus row_z with one z per styleblock) and prints the relative residual ‖mapping(z) − w‖/‖w‖.
    """
    import numpy as np

    from clipstyle.inversion.files import add_arrays
    from clipstyle.inversion.mapping_inverse import invert_mapping
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents import save_latents

    from clipstyle.latents.context import read_context

    ctx = read_context(latents)  # the file's truncation unless --truncation/--truncation-cutoff say otherwise
    truncation, truncation_cutoff = ctx.truncation_or(truncation), ctx.cutoff_or(truncation_cutoff)
    dev = resolve_device(device)
    meta = read_meta(latents)
    G = load_network(network, meta, dev, quiet)
    ws, _, c_file, meta = start_from_latents(latents, G, dev)
    target = out if out is not None else latents.with_name(f"{latents.stem}_z.npz")
    if target.resolve() == latents.resolve():
        raise UsageError(f"--out {target} is the input file; choose another path (the input is never overwritten)")
    refuse_overwrite(target, overwrite)
    c = c_file if c_file is not None and class_idx is None else class_vector(G.c_dim, class_idx, ws.shape[0], dev)
    rows_differ = bool((ws != ws[:, :1]).any())
    inv = invert_mapping(G, ws if rows_differ else ws[:, 0], c if G.c_dim > 0 else None,
                         truncation_psi=truncation, truncation_cutoff=truncation_cutoff, refine_steps=refine_steps)
    info = {"network": meta.get("network") or network, "source_latents": str(latents), "truncation_psi": truncation,
            "truncation_cutoff": truncation_cutoff, "residual": inv.residual.tolist(),
            "least_squares_layers": list(inv.least_squares_layers), "notes": list(inv.notes),
            "z_convention": "mapping(z, c, truncation_psi) ≈ ws; z on the sphere of radius sqrt(z_dim)"}
    save_latents(target, ws, z=inv.z, c=c if G.c_dim > 0 else None, meta=info)
    if inv.row_z is not None:
        add_arrays(target, {"row_z": inv.row_z.numpy(), "row_residual": inv.row_residual.numpy().astype(np.float64)})
    for note in inv.notes:
        typer.echo(f"note: {note}", err=True)
    for i, r in enumerate(inv.residual.tolist()):
        label = f"latent {i}: " if ws.shape[0] > 1 else ""
        kind = "best single z for all styleblocks" if rows_differ else "z"
        typer.echo(f"{label}{kind}: relative residual ‖mapping(z) − w‖/‖w‖ = {r:.3g}")
        if inv.row_residual is not None:
            per_row = ", ".join(f"{x:.2g}" for x in inv.row_residual[i].tolist())
            typer.echo(f"{label}one z per styleblock: residuals {per_row}")
    typer.echo(str(target))


@handle_errors
def edit_command(
    photo_or_latents: Annotated[Optional[str], typer.Argument(
        help="A photo to project first, or a latent .npz (ours or NVIDIA's projected_w.npz).",
        show_default=False)] = None,
    prompt: Annotated[Optional[str], typer.Argument(help="The edit, e.g. \"a smiling face\" (with --latents the only "
                                                    "argument; optional with --recipe).", show_default=False)] = None,
    latents: Annotated[Optional[Path], typer.Option(help="Start from this latent file instead of a photo.")] = None,
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
    class_idx: OptClass = None,
    seed: OptSeed = 0,
    save_every: OptSaveEvery = 10,
    outdir: OptOutdir = Path("out"),
    device: DeviceOpt = "auto",
    quiet: OptQuiet = False,
) -> None:
    """Edit a photo (projected first) or a latent with a text PROMPT.

    Writes result.png (after), before_after.png, progress.gif, latents.npz and run.json into a new folder under
    --outdir and prints its path. --recipe NAME applies a curated edit (PROMPT may then be omitted); --mix fixes
    styleblocks to another latent during the edit; --blend edits and renders in a blended network: a photo is
    projected into the base network A (--network), then edited and rendered in the blend.
    """
    from clipstyle.inversion.edit import EditConfig, edit
    from clipstyle.io.files import make_run_dir
    from clipstyle.latents.constraints import constraint_rows, latent_l2_weight
    from clipstyle.optimize.progress import ProgressBar
    from clipstyle.pipelines.runfolder import save_run
    from clipstyle.render.files import save_png, side_by_side

    rec = None
    if recipe is not None:
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(recipe)
    start_path, prompt = _edit_inputs(photo_or_latents, prompt, latents, rec)
    source_text = source if source is not None else (rec.source if rec is not None else "a face")
    check_blend_spec(blend)
    dev = resolve_device(device)
    is_latent = latents is not None or start_path.suffix.lower() == ".npz"
    projection = None
    if is_latent:
        base = load_network(network, read_meta(start_path), dev, quiet)
        ws0, noise, c_file, _ = start_from_latents(start_path, base, dev)
        c = c_file if c_file is not None and class_idx is None else class_vector(base.c_dim, class_idx,
                                                                                 ws0.shape[0], dev)
    else:
        from clipstyle.io.images import load_image_array

        load_image_array(start_path)
        perceptual_model = load_perceptual(perceptual, lpips_weights, dev, quiet)
        pcfg = projection_config(project_steps, project_lr, project_space, perceptual_model, mse, noise_reg, seed,
                                 save_every)
        base = load_network(network, None, dev, quiet)
        c = class_vector(base.c_dim, class_idx, 1, dev)
    free, mixed = constraint_rows(base, blocks, mix or [], rec, dev, c[:1])
    G = with_blend(base, blend, dev, quiet)  # every user error is reported before the (slow) projection
    if not is_latent:  # project into A; edit and render in the blend
        projection = run_projection(base, load_target(start_path, base, crop, align, dev), pcfg, perceptual_model,
                                    c, quiet)
        ws0, noise = projection.ws.to(dev), projection.noise
    directional = strength if strength is not None else (rec.strength if rec is not None else 1.0)
    l2_weight = latent_l2_weight(l2, rec, G.num_ws, G.w_dim, default=0.008)
    guide, cut, num_cutouts = build_guide(clip_model, clip_pretrained, dev, cutouts)
    cfg = EditConfig(source_text=source_text, steps=steps, lr=lr, directional=directional, l2=l2_weight, keep=keep,
                     free_rows=free, save_every=save_every, seed=seed)
    with ProgressBar("editing", steps, enabled=not quiet) as bar:
        result = edit(G, ws0, prompt, guide, cut, cfg, noise=noise, mix=mixed, callbacks=[bar])

    run_dir = make_run_dir(outdir, prompt if rec is None or prompt != rec.target else rec.name)
    before_u8, after_u8 = uint8_image(result.before), uint8_image(result.after)
    settings = {"command": "edit", "input": str(start_path), "input_kind": "latents" if is_latent else "photo",
                "prompt": prompt, "source": source_text, "recipe": rec.name if rec is not None else None,
                "network": network, "clip_model": clip_model, "clip_pretrained": clip_pretrained, "steps": steps,
                "lr": lr, "blocks": list(result.free_rows), "strength": directional, "l2": l2_weight, "keep": keep,
                "mix": list(mix or []), "mixed_rows": sorted(mixed), "blend": blend, "cutouts": num_cutouts,
                "class": class_idx, "seed": seed, "save_every": save_every, "device": dev}
    extra: dict[str, Any] = {}
    if projection is not None:
        settings.update({"project_steps": project_steps, "project_lr": project_lr, "project_space": project_space,
                         "perceptual": perceptual, "mse": projection.config.mse, "noise_reg": noise_reg,
                         "crop": crop, "align": align, "projected_into": base.describe().get("source")})
        extra["projection_metrics"] = projection.metrics
        save_png(run_dir / "target.png", uint8_image(projection.target))
    paths = save_run(run_dir, result.run, settings, G.describe(), extra_json=extra, c=c if G.c_dim > 0 else None,
                     result_image=after_u8, gif_frames=side_by_side_frames(before_u8, result.run.frames))
    save_noise(paths["latents"], dict(noise))
    record_base_network(paths["latents"], base, blend)
    save_png(run_dir / "before_after.png", side_by_side(before_u8, after_u8))
    if result.run.interrupted:
        typer.echo(f"interrupted after {result.run.steps_done} steps; kept the best result so far", err=True)
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
    """Add ``project``, ``invert-z`` and ``edit`` to the clipstyle app."""
    app.command("project")(project_command)
    app.command("invert-z")(invert_z_command)
    app.command("edit")(edit_command)
