"""Real-photo workflows: ``project``, ``encode``, ``edit``, ``invert_z`` (``align`` is in
:mod:`clipstyle.pipelines.align`). Each takes keyword arguments named like the CLI options and returns a
frozen :class:`~clipstyle.pipelines.run.Run`; ``Run.save(outdir)`` writes its folder atomically.

The full real-photo path (``edit photo.jpg "smiling" --align --encoder E4E.pt --tune --id-weights ARCFACE``):

1. **align** the largest face the FFHQ way (Karras et al. 2019, App. A; dlib landmarks, offline);
2. **encode** it with e4e (Tov et al. 2021) — the start of
3. **project** (the StyleGAN2 projector in W, Karras et al. 2020, App. D) — the pivot;
4. **tune** the synthesis weights around the pivot (PTI, Roich et al. 2022);
5. **edit** with the directional CLIP loss, StyleCLIP's L2 term and the ArcFace identity loss
   (Patashnik et al. 2021), in the tuned generator.

Without an optional file each stage falls back to what exists without it (no e4e: projection from the mean w;
no ArcFace: the CLIP keep term only) and says so once through ``log``. Every pipeline takes ``callback``
(called with ``(StepInfo, images)`` each step of every stage) and ``stop`` (a callable; True ends the running
stage keeping its best result).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clipstyle.pipelines.photo_parts import (
    PhotoOptionError,
    PhotoRun,
    check_blend_spec,
    class_vector,
    identity_similarity,
    load_network,
    load_perceptual,
    load_weights,
    noise_meta,
    photo_image,
    projection_config,
    say_once,
    side_by_side_frames,
    stage,
    target_tensor,
    uint8_image,
    with_blend,
)
from clipstyle.pipelines.run import Run

__all__ = ["PhotoOptionError", "edit", "encode", "invert_z", "project"]

Log = Callable[[str], None] | None


def _encode_photo(encoder: Any, img: Any, crop: bool, dev: str) -> Any:
    """e4e codes ``[1, num_ws, w_dim]`` of a PIL photo (at the encoder's 256² input)."""
    import torch

    with torch.no_grad():
        return encoder(target_tensor(img, 256, crop, None, dev))


def _check_encoder_fits(encoder: Any, G: Any) -> None:
    if (encoder.num_ws, encoder.w_dim) != (G.num_ws, G.w_dim):
        raise PhotoOptionError(f"--encoder makes [{encoder.num_ws}, {encoder.w_dim}] latents but the network needs "
                               f"[{G.num_ws}, {G.w_dim}]; use the e4e file's own decoder (omit --network)")


def _project_photo(G: Any, img: Any, *, steps: int, lr: float | None, space: str, perceptual: Any,
                   mse: float | None, noise_reg: float, crop: bool, init: str, encoder: Any, tune: bool,
                   tune_steps: int, tune_lr: float, seed: int, save_every: int, dev: str, c: Any, mix: Any,
                   quiet: bool, callback: Any, stop: Any, emit: Callable[[str], None]) -> dict[str, Any]:
    """Encode (optional), project and tune (optional) one photo; returns the pieces the pipelines save."""
    from clipstyle.inversion.project import project as run_projection

    target = target_tensor(img, G.img_resolution, crop, G, dev)
    cfg = projection_config(steps, lr, space, perceptual, mse, noise_reg, seed, save_every)
    start = None
    if init == "e4e":
        if encoder is None:
            emit("no --encoder given: the projection starts from the mean w (pass --encoder e4e_ffhq_encode.pt "
                 "to start from an e4e encoding)")
        else:
            _check_encoder_fits(encoder, G)
            start = _encode_photo(encoder, img, crop, dev)
    elif init != "mean":
        raise PhotoOptionError(f"--init must be mean or e4e, got {init!r}")
    with stage("projecting", cfg.steps, quiet, callback) as cbs:
        proj = run_projection(G, target, cfg, perceptual=perceptual, c=c if G.c_dim > 0 else None,
                              mix=mix or None, callbacks=cbs, init=start, stop=stop)
    out: dict[str, Any] = {"projection": proj, "target": target, "tuned": None, "start": start}
    if tune:
        from clipstyle.inversion.pti import TuneConfig
        from clipstyle.inversion.pti import tune as run_tuning

        if G.c_dim > 0 or not hasattr(G, "synthesis"):
            raise PhotoOptionError("--tune works on unconditional StyleGAN2/3 networks")
        tcfg = TuneConfig(steps=tune_steps, lr=tune_lr, seed=seed, save_every=save_every)
        with stage("tuning", tune_steps, quiet, callback) as cbs:
            out["tuned"] = run_tuning(G, proj.ws[:1].to(dev), target, tcfg, noise=proj.noise, perceptual=perceptual,
                                      callbacks=cbs, stop=stop)
    return out


def project(photo: str | Path, *, network: str | None = None, steps: int = 1000, lr: float | None = 0.1,
            space: str = "w", perceptual: str = "lpips", lpips_weights: str | None = None, mse: float | None = None,
            noise_reg: float = 1e5, crop: bool = True, align: bool = False, class_idx: "int | str | None" = None,
            mix: Sequence[str] | None = None, blend: str | None = None, init: str = "mean",
            encoder: str | Path | None = None, tune: bool = False, tune_steps: int = 350, tune_lr: float = 3e-4,
            id_weights: str | Path | None = None, seed: int = 0, save_every: int = 10, device: str = "cpu",
            quiet: bool = True, callback: Any = None, stop: Callable[[], bool] | None = None,
            log: Log = None) -> Run:
    """Project a photo into the generator (optionally from an e4e encoding, then pivotal tuning).

    Returns:
        A :class:`Run` named ``proj-<stem>``: ``ws`` ``[1, num_ws, w_dim]``, images target.png/proj.png
        (+ tuned.png), ``run.json`` ``metrics`` (mse, psnr, lpips), ``tune_metrics`` (psnr/lpips of pivot and
        tuned result, locality), ``identity_similarity`` with ``id_weights``; with ``tune`` the folder gets
        ``generator.safetensors`` and ``latents.npz`` names it.

    Raises:
        ImageError, FileNotFoundError (a missing --encoder/--id-weights, named), AlignmentError,
        PhotoOptionError, CheckpointError, LPIPSWeightsError, DownloadError.
    """
    from clipstyle.io.images import check_image
    from clipstyle.latents.constraints import constraint_rows

    emit = say_once(log)
    photo = Path(photo)
    check_image(photo)  # a missing or broken photo fails before any network is loaded
    check_blend_spec(blend)
    if tune and blend:
        raise PhotoOptionError("--tune and --blend cannot be combined (pivotal tuning tunes one network)")
    enc = load_weights("encoder", encoder, "--encoder", device)
    face_id = load_weights("identity", id_weights, "--id-weights", device)
    perceptual_model = load_perceptual(perceptual, lpips_weights, device, quiet)
    base = load_network(network or (str(encoder) if enc is not None else None), None, device, quiet)
    c = class_vector(base.c_dim, class_idx, 1, device)
    _, mixed = constraint_rows(base, None, list(mix or []), None, device, c)
    G = with_blend(base, blend, device, quiet)
    img = photo_image(photo, align, emit)
    parts = _project_photo(G, img, steps=steps, lr=lr, space=space, perceptual=perceptual_model, mse=mse,
                           noise_reg=noise_reg, crop=crop, init=init, encoder=enc, tune=tune, tune_steps=tune_steps,
                           tune_lr=tune_lr, seed=seed, save_every=save_every, dev=device, c=c, mix=mixed,
                           quiet=quiet, callback=callback, stop=stop, emit=emit)
    proj, tuned = parts["projection"], parts["tuned"]
    target_u8, proj_u8 = uint8_image(proj.target), uint8_image(proj.image)
    settings = {"command": "project", "photo": str(photo), "network": network or ("e4e decoder" if enc else "ffhq"),
                "steps": steps, "lr": proj.config.lr, "space": proj.config.space, "perceptual": perceptual,
                "lpips_weights": lpips_weights, "mse": proj.config.mse, "noise_reg": noise_reg, "crop": crop,
                "align": align, "class": class_idx, "seed": seed, "w_avg_samples": proj.config.w_avg_samples,
                "save_every": save_every, "device": device, "mix": list(mix or []), "mixed_rows": sorted(mixed),
                "blend": blend, "init": init if parts["start"] is not None else "mean",
                "encoder": str(encoder) if encoder else None, "tune": tune,
                "tune_steps": tune_steps if tune else None, "tune_lr": tune_lr if tune else None,
                "id_weights": str(id_weights) if id_weights else None}
    extra: dict[str, Any] = {"metrics": proj.metrics, "w_std": proj.w_std, "noise_maps": list(proj.noise)}
    images = {"target.png": target_u8, "proj.png": proj_u8}
    result_u8 = proj_u8
    if tuned is not None:
        extra["tune_metrics"] = tuned.metrics
        result_u8 = uint8_image(tuned.image)
        images["tuned.png"] = result_u8
        emit(f"pivotal tuning: PSNR {tuned.metrics['psnr_pivot']:.2f} → {tuned.metrics['psnr_tuned']:.2f} dB, "
             f"random-w images within {tuned.metrics['locality_psnr_random']:.1f} dB")
    if face_id is not None:
        final = tuned.image if tuned is not None else proj.image
        extra["identity_similarity"] = identity_similarity(face_id, final, proj.target)
        emit(f"identity similarity (ArcFace) to the photo: {extra['identity_similarity']:.4f}")
    arrays, meta = noise_meta(proj.noise)
    if blend:
        meta.update({"network": base.describe().get("source"), "blend": blend})
    return PhotoRun(name=f"proj-{photo.stem}", result=proj.run, settings=settings, network=G.describe(),
                    c=c if G.c_dim > 0 else None, extra_json=extra, extra_images=images, extra_arrays=arrays,
                    result_image=result_u8, gif_frames=side_by_side_frames(target_u8, proj.run.frames),
                    generator=tuned.G if tuned is not None else None, latent_meta=meta)


def encode(photo: str | Path, *, encoder: str | Path, network: str | None = None, crop: bool = True,
           align: bool = False, id_weights: str | Path | None = None, device: str = "cpu", quiet: bool = True,
           log: Log = None) -> Run:
    """Encode a photo with e4e: ``ws = E(photo) + latent_avg`` (one forward pass, no optimization).

    The network is the e4e file's own decoder unless ``network`` is given (it must have the same
    ``num_ws``/``w_dim``). Returns a :class:`Run` named ``enc-<stem>`` (target.png, proj.png, latents.npz,
    run.json with mse/psnr and, with ``id_weights``, the ArcFace similarity).

    Raises:
        FileNotFoundError: a missing --encoder / --id-weights (named). WeightsFileError, UnsafePickleError,
        ImageError, AlignmentError, PhotoOptionError.
    """
    import time

    import torch

    from clipstyle.inversion.project import psnr
    from clipstyle.io.images import check_image

    emit = say_once(log)
    photo = Path(photo)
    check_image(photo)
    enc = load_weights("encoder", encoder, "--encoder", device)
    face_id = load_weights("identity", id_weights, "--id-weights", device)
    G = load_network(network or str(encoder), None, device, quiet)
    _check_encoder_fits(enc, G)
    img = photo_image(photo, align, emit)
    t0 = time.perf_counter()
    ws = _encode_photo(enc, img, crop, device)
    seconds = time.perf_counter() - t0
    target = target_tensor(img, G.img_resolution, crop, G, device)
    with torch.no_grad():
        image = G.synthesis(ws, noise_mode="const")
    metrics = {"mse": float((image - target).square().mean()), "psnr": psnr(image, target)}
    extra: dict[str, Any] = {"metrics": metrics, "encode_seconds": seconds}
    if face_id is not None:
        extra["identity_similarity"] = identity_similarity(face_id, image, target)
        emit(f"identity similarity (ArcFace) to the photo: {extra['identity_similarity']:.4f}")
    target_u8, proj_u8 = uint8_image(target), uint8_image(image)
    settings = {"command": "encode", "photo": str(photo), "encoder": str(encoder), "network": network,
                "crop": crop, "align": align, "id_weights": str(id_weights) if id_weights else None,
                "device": device}
    return PhotoRun(name=f"enc-{photo.stem}", result=None, settings=settings, network=G.describe(),
                    ws_=ws.detach().cpu(), images_=proj_u8[None], extra_json=extra,
                    extra_images={"target.png": target_u8, "proj.png": proj_u8}, result_image=proj_u8,
                    gif_frames=(proj_u8,))


from clipstyle.pipelines.photo_edit import edit, invert_z
