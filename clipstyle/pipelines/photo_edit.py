"""The editing half of :mod:`clipstyle.pipelines.photo`: ``edit`` (photo or latent + prompt) and ``invert_z``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipstyle.pipelines.photo_parts import (
    PhotoOptionError,
    PhotoRun,
    check_blend_spec,
    class_vector,
    generator_for_latents,
    identity_similarity,
    load_network,
    load_perceptual,
    load_weights,
    noise_meta,
    photo_image,
    read_meta,
    say_once,
    side_by_side_frames,
    stage,
    start_from_latents,
    uint8_image,
    with_blend,
)
from clipstyle.pipelines.run import Run

__all__ = ["edit", "invert_z"]


def edit(photo_or_latents: str | Path, prompt: str, *, source: str | None = None, recipe: str | None = None,
         network: str | None = None, clip_model: str = "ViT-B-32", clip_pretrained: str = "openai",
         steps: int = 100, lr: float = 0.1, blocks: str | None = None, strength: float | None = None,
         l2: float | None = None, keep: float = 0.3, mix: Sequence[str] | None = None, blend: str | None = None,
         cutouts: int | None = None, project_steps: int = 1000, project_lr: float = 0.1, project_space: str = "w",
         perceptual: str = "lpips", lpips_weights: str | None = None, mse: float | None = None,
         noise_reg: float = 1e5, crop: bool = True, align: bool = False, class_idx: "int | str | None" = None,
         encoder: str | Path | None = None, tune: bool = False, tune_steps: int = 350, tune_lr: float = 3e-4,
         id_weights: str | Path | None = None, id_lambda: float = 0.1, seed: int = 0, save_every: int = 10,
         device: str = "cpu", quiet: bool = True, callback: Any = None, stop: Callable[[], bool] | None = None,
         log: Callable[[str], None] | None = None) -> Run:
    """Edit a photo (aligned, encoded, projected, tuned first, as asked) or a latent file with a text prompt.

    A ``.npz`` input is a latent file: it is edited in the generator it names (a pivotal-tuning
    ``generator.safetensors`` beside it, else its network) unless ``network`` is given. With ``id_weights`` the
    ArcFace identity loss ``id_lambda · (1 − similarity(x, x_photo))`` joins the objective and the final
    similarity is reported (``run.json`` ``identity_similarity``).

    Returns:
        A :class:`Run` named after the prompt (result.png = after, before_after.png, target.png for a photo,
        latents.npz, run.json with ``projection_metrics``, ``tune_metrics``, ``identity_similarity``).

    Raises:
        GuidanceError, ImageError, LatentFileError, FileNotFoundError (missing weights, named),
        AlignmentError, PhotoOptionError, CheckpointError, LPIPSWeightsError, DownloadError.
    """
    import torch

    from clipstyle.guidance import CLIPGuide, CutoutConfig, Cutouts
    from clipstyle.inversion.edit import EditConfig
    from clipstyle.inversion.edit import edit as run_edit
    from clipstyle.latents.constraints import constraint_rows, latent_l2_weight
    from clipstyle.pipelines.photo import _project_photo
    from clipstyle.render.files import side_by_side

    emit = say_once(log)
    rec = None
    if recipe is not None:
        from clipstyle.guidance.recipes import get_recipe

        rec = get_recipe(recipe)
    start_path = Path(photo_or_latents)
    source_text = source if source is not None else (rec.source if rec is not None else "a face")
    check_blend_spec(blend)
    is_latent = start_path.suffix.lower() in (".npz", ".npy", ".pt", ".pth")
    face_id = load_weights("identity", id_weights, "--id-weights", device)
    # The fallback notes are for the real-photo path (--align/--tune/--encoder/--id-weights asked for).
    full_path = not is_latent and (align or tune or encoder is not None or id_weights is not None)
    if face_id is None and full_path:
        emit("no --id-weights given: identity is kept by the CLIP keep term only (pass --id-weights "
             "model_ir_se50.pth for the ArcFace identity loss)")
    parts: dict[str, Any] | None = None
    if is_latent:
        base = generator_for_latents(start_path, network, device, quiet)
        ws0, noise, c_file, _ = start_from_latents(start_path, base, device)
        c = c_file if c_file is not None and class_idx is None else class_vector(base.c_dim, class_idx,
                                                                                 ws0.shape[0], device)
        reference = None
    else:
        from clipstyle.io.images import check_image

        check_image(start_path)
        enc = load_weights("encoder", encoder, "--encoder", device)
        if enc is None and full_path:
            emit("no --encoder given: the photo is projected from the mean w (pass --encoder "
                 "e4e_ffhq_encode.pt to start from an e4e encoding)")
        perceptual_model = load_perceptual(perceptual, lpips_weights, device, quiet)
        base = load_network(network or (str(encoder) if enc is not None else None), None, device, quiet)
        c = class_vector(base.c_dim, class_idx, 1, device)
    free, mixed = constraint_rows(base, blocks, list(mix or []), rec, device, c[:1])
    G = with_blend(base, blend, device, quiet)
    if not is_latent:
        img = photo_image(start_path, align, emit)
        parts = _project_photo(base, img, steps=project_steps, lr=project_lr, space=project_space,
                               perceptual=perceptual_model, mse=mse, noise_reg=noise_reg, crop=crop,
                               init="e4e" if enc is not None else "mean", encoder=enc, tune=tune,
                               tune_steps=tune_steps, tune_lr=tune_lr, seed=seed, save_every=save_every, dev=device,
                               c=c, mix=None, quiet=quiet, callback=callback, stop=stop, emit=emit)
        ws0, noise = parts["projection"].ws.to(device), parts["projection"].noise
        reference = parts["target"]
        if parts["tuned"] is not None:
            if blend:
                raise PhotoOptionError("--tune and --blend cannot be combined (the tuned weights are A's)")
            G = base = parts["tuned"].G
    elif tune:
        raise PhotoOptionError("--tune applies to a photo; a latent file is edited in the generator it names")
    directional = strength if strength is not None else (rec.strength if rec is not None else 1.0)
    l2_weight = latent_l2_weight(l2, rec, G.num_ws, G.w_dim, default=0.008)
    num = cutouts if cutouts is not None else (32 if device.startswith("cuda") else 8)
    guide = CLIPGuide(clip_model, None if clip_pretrained.strip().lower() == "none" else clip_pretrained,
                      device=device)
    cut = Cutouts(CutoutConfig(num_cutouts=num), guide.input_size)
    cfg = EditConfig(source_text=source_text, steps=steps, lr=lr, directional=directional, l2=l2_weight, keep=keep,
                     free_rows=free, save_every=save_every, seed=seed)
    extra_terms = []
    if face_id is not None:
        from clipstyle.encoders.arcface import IdentityLoss
        from clipstyle.inversion.noise import SynthesisWithNoise

        if reference is None:
            with torch.no_grad():
                reference = SynthesisWithNoise(G, noise).synthesis(ws0[:1], noise_mode="const")
        extra_terms.append((IdentityLoss(face_id, reference), id_lambda))
    with stage("editing", steps, quiet, callback) as cbs:
        result = run_edit(G, ws0, prompt, guide, cut, cfg, noise=noise, mix=mixed, extra_terms=extra_terms,
                          callbacks=cbs, stop=stop)
    before_u8, after_u8 = uint8_image(result.before), uint8_image(result.after)
    settings = {"command": "edit", "input": str(start_path), "input_kind": "latents" if is_latent else "photo",
                "prompt": prompt, "source": source_text, "recipe": rec.name if rec is not None else None,
                "network": network, "clip_model": clip_model, "clip_pretrained": clip_pretrained, "steps": steps,
                "lr": lr, "blocks": list(result.free_rows), "strength": directional, "l2": l2_weight, "keep": keep,
                "mix": list(mix or []), "mixed_rows": sorted(mixed), "blend": blend, "cutouts": num,
                "class": class_idx, "seed": seed, "save_every": save_every, "device": device,
                "id_weights": str(id_weights) if id_weights else None,
                "id_lambda": id_lambda if face_id is not None else None}
    extra: dict[str, Any] = {}
    images = {"before_after.png": side_by_side(before_u8, after_u8)}
    tuned_G = None
    if parts is not None:
        proj = parts["projection"]
        settings.update({"project_steps": project_steps, "project_lr": project_lr, "project_space": project_space,
                         "perceptual": perceptual, "mse": proj.config.mse, "noise_reg": noise_reg, "crop": crop,
                         "align": align, "encoder": str(encoder) if encoder else None, "tune": tune,
                         "tune_steps": tune_steps if tune else None, "projected_into": base.describe().get("source")})
        extra["projection_metrics"] = proj.metrics
        images["target.png"] = uint8_image(proj.target)
        if parts["tuned"] is not None:
            extra["tune_metrics"] = parts["tuned"].metrics
            tuned_G = parts["tuned"].G
    if face_id is not None:
        extra["identity_similarity"] = identity_similarity(face_id, result.after, reference)
        emit(f"identity similarity (ArcFace) of the edit to the photo: {extra['identity_similarity']:.4f}")
    arrays, meta = noise_meta(dict(noise))
    if blend:
        meta.update({"network": base.describe().get("source"), "blend": blend})
    if is_latent:
        named = read_meta(start_path).get("generator")
        if named and not network:  # keep rendering the edit with the same tuned generator
            meta["generator"] = str((start_path.parent / named).resolve())
    name = prompt if rec is None or prompt != rec.target else rec.name
    return PhotoRun(name=name, result=result.run, settings=settings, network=G.describe(),
                    c=c if G.c_dim > 0 else None, extra_json=extra, extra_images=images, extra_arrays=arrays,
                    result_image=after_u8, gif_frames=side_by_side_frames(before_u8, result.run.frames),
                    generator=tuned_G, latent_meta=meta)


def invert_z(latents: str | Path, *, network: str | None = None, truncation: float | None = None,
             truncation_cutoff: int | None = None, class_idx: "int | str | None" = None, refine_steps: int = 30,
             starts: int = 16, device: str = "cpu", quiet: bool = True) -> Run:
    """Find the z whose mapping gives each latent's w (:func:`clipstyle.inversion.invert_mapping`).

    ``truncation``/``truncation_cutoff`` left unset are the ones recorded in the file (else psi 1, all rows):
    the truncation is undone before the inversion.

    Returns:
        A :class:`Run` without an optimization: ``ws`` (the input), ``z`` ``[N, z_dim]``, ``extra_json``
        with ``residual`` (relative, per latent), ``notes``; ``extra_arrays`` ``row_z``/``row_residual`` for a
        W+ input.
    """
    import numpy as np

    from clipstyle.inversion.mapping_inverse import invert_mapping

    from clipstyle.latents.context import read_context

    latents = Path(latents)
    ctx = read_context(latents)  # the file's truncation unless told otherwise
    truncation, truncation_cutoff = ctx.truncation_or(truncation), ctx.cutoff_or(truncation_cutoff)
    G = generator_for_latents(latents, network, device, quiet)
    ws, _, c_file, meta = start_from_latents(latents, G, device)
    c = c_file if c_file is not None and class_idx is None else class_vector(G.c_dim, class_idx, ws.shape[0], device)
    rows_differ = bool((ws != ws[:, :1]).any())
    inv = invert_mapping(G, ws if rows_differ else ws[:, 0], c if G.c_dim > 0 else None,
                         truncation_psi=truncation, truncation_cutoff=truncation_cutoff, refine_steps=refine_steps,
                         starts=starts, hops=20 if starts > 0 else 0)
    info = {"network": meta.get("network") or network, "source_latents": str(latents), "truncation_psi": truncation,
            "truncation_cutoff": truncation_cutoff, "residual": inv.residual.tolist(),
            "least_squares_layers": list(inv.least_squares_layers), "notes": list(inv.notes),
            "rows_differ": rows_differ,
            "z_convention": "mapping(z, c, truncation_psi) ≈ ws; z on the sphere of radius sqrt(z_dim)"}
    arrays = {}
    if inv.row_z is not None:
        arrays = {"row_z": inv.row_z.numpy(), "row_residual": inv.row_residual.numpy().astype(np.float64)}
    return PhotoRun(name=f"{latents.stem}_z", result=None, settings={"command": "invert-z", **info},
                    network=G.describe(), ws_=ws.cpu(), z=inv.z, c=c if G.c_dim > 0 else None, extra_json=info,
                    extra_arrays=arrays, images_=np.zeros([1, 1, 1, 3], np.uint8), latent_meta=info)
