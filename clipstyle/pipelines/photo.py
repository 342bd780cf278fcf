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
no ArcFace: the CLIP keep term only) and says so once through ``notify``. Every pipeline takes ``callback``
(called with ``(StepInfo, images)`` each step of every stage) and ``stop`` (a callable; True ends the running
stage keeping its best result).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipstyle.pipelines.photo_parts import (
    PhotoOptionError,
    PhotoRun,
    identity_similarity,
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
from clipstyle.pipelines.common import labels, load_network
from clipstyle.pipelines.run import Run

if TYPE_CHECKING:
    from clipstyle.workflows.photo import EncodeSettings, ProjectSettings

__all__ = ["PhotoOptionError", "encode", "project", "tuned_metrics"]

Notify = Callable[[str], None] | None


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
                   quiet: bool, callback: Any, stop: Any, emit: Callable[[str], None], track: Any = None,
                   phase: str = "", precision: str = "fp32") -> dict[str, Any]:
    """Encode (optional), project and tune (optional) one photo; returns the pieces the pipelines save.
    ``track``: experiment trackers (:mod:`clipstyle.tracking`); the projection logs under ``phase``, the
    tuning under ``tune``."""
    from clipstyle.inversion.project import project as run_projection
    from clipstyle.tracking import with_phase

    target = target_tensor(img, G.img_resolution, crop, G, dev)
    cfg = projection_config(steps, lr, space, perceptual, mse, noise_reg, seed, save_every, precision)
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
    with stage("projecting", cfg.steps, quiet, with_phase(callback, track, phase)) as cbs:
        proj = run_projection(G, target, cfg, perceptual=perceptual, c=c if G.c_dim > 0 else None,
                              mix=mix or None, callbacks=cbs, init=start, stop=stop)
    out: dict[str, Any] = {"projection": proj, "target": target, "tuned": None, "start": start}
    if tune:
        from clipstyle.inversion.pti import TuneConfig
        from clipstyle.inversion.pti import tune as run_tuning

        if G.c_dim > 0 or not hasattr(G, "synthesis"):
            raise PhotoOptionError("--tune works on unconditional StyleGAN2/3 networks")
        tcfg = TuneConfig(steps=tune_steps, lr=tune_lr, seed=seed, save_every=save_every, precision=precision)
        with stage("tuning", tune_steps, quiet, with_phase(callback, track, "tune")) as cbs:
            out["tuned"] = run_tuning(G, proj.ws[:1].to(dev), target, tcfg, noise=proj.noise, perceptual=perceptual,
                                      callbacks=cbs, stop=stop)
    return out


def split_models(options: dict[str, Any], encoder: Any, perceptual: Any) -> tuple[Any, Any]:
    """``encoder=`` and ``perceptual=`` name a loaded model, or (a path, ``"lpips"``/``"none"``) the setting of
    that name: settings move into ``options``; returns the loaded ``(encoder, perceptual)`` (None if not given)."""
    import os

    if isinstance(encoder, (str, os.PathLike)):
        options["encoder"], encoder = os.fspath(encoder), None
    if isinstance(perceptual, str):
        options["perceptual"], perceptual = perceptual, None
    return encoder, perceptual


def _models(s: Any, device: str, G: Any, encoder: Any, identity: Any, perceptual: Any, quiet: bool,
            lpips: bool = True) -> tuple[str, Any, Any, Any, Any]:
    """``(device, G, encoder, identity, perceptual)``: the models given, the others loaded from the settings
    (``G`` from ``network``, else the e4e file's decoder, else ffhq; unblended)."""
    from clipstyle.pipelines.common import pick_device

    dev = pick_device(device, G)
    enc = encoder if encoder is not None else load_weights("encoder", s.encoder, "--encoder", dev)
    face_id = identity if identity is not None else load_weights("identity", s.id_weights, "--id-weights", dev)
    percept = None
    if lpips:
        percept = perceptual if perceptual is not None else load_perceptual(s.perceptual, s.lpips_weights, dev, quiet)
    if G is None:
        G = load_network(s.network or (str(s.encoder) if enc is not None else "ffhq"), dev, progress=not quiet)
    return dev, G.to(dev), enc, face_id, percept


def project(photo: "str | Path | ProjectSettings | None" = None, /, *, G: Any = None, encoder: Any = None,
            identity: Any = None, perceptual: Any = None, device: str = "auto", callback: Any = None,
            stop: Callable[[], bool] | None = None, log: Any = None, notify: Notify = None, quiet: bool = True,
            **options: Any) -> Run:
    """Project a photo into the generator (optionally from an e4e encoding, then pivotal tuning).

    The StyleGAN2 projector (Karras et al. 2020, App. D: LPIPS + MSE, w-noise ramp, noise regularization),
    in W or W+ (Abdal et al. 2019), optionally started from e4e (Tov et al. 2021) and followed by pivotal
    tuning (Roich et al. 2022).

    Args:
        photo: the photo's path, or a whole :class:`~clipstyle.workflows.photo.ProjectSettings`.
        **options: the other settings by name (the CLI's option names; see ``ProjectSettings``).
        G: the base generator to use (default: loaded from ``network``, else the e4e file's decoder); a
            ``blend`` is built on it.
        encoder, identity, perceptual: a loaded e4e encoder, ArcFace model and LPIPS (default: loaded from
            the settings ``encoder``, ``id_weights``, ``perceptual``/``lpips_weights``). A path given as
            ``encoder=`` or ``"lpips"``/``"none"`` as ``perceptual=`` is that setting.
        device: ``auto`` (G's device when given), ``cpu``, ``cuda``…
        callback: ``(StepInfo, images)`` after every step of each stage; stop: True ends the running stage
            keeping its best. log: experiment trackers. notify: ``notify(text)`` for fallback notes (once each).

    Returns:
        A :class:`Run` named ``proj-<stem>``: ``ws`` ``[1, num_ws, w_dim]``, images target.png/proj.png
        (+ tuned.png), ``run.json`` ``metrics`` (mse, psnr, lpips of the result: the tuned image with ``tune``),
        ``projection_metrics`` (the pivot's), ``tune_metrics`` (psnr/lpips of pivot and tuned result,
        locality), ``identity_similarity`` with ``id_weights``; with ``tune`` the folder gets
        ``generator.safetensors`` and ``latents.npz`` names it.

    Raises:
        SettingsError (before anything loads), ImageError, AlignmentError, PhotoOptionError, CheckpointError,
        LPIPSWeightsError, DownloadError.
    """
    from clipstyle.io.images import check_image
    from clipstyle.latents.constraints import constraint_rows
    from clipstyle.tracking import check_log, tracking
    from clipstyle.workflows.photo import ProjectSettings

    encoder, perceptual = split_models(options, encoder, perceptual)
    s = ProjectSettings.of(photo, **options)
    check_log(log)  # a bad --log spec or a missing extra: before anything loads
    emit = say_once(notify)
    path = Path(s.photo)
    check_image(path)  # a missing or broken photo fails before any network is loaded
    dev, base, enc, face_id, perceptual_model = _models(s, device, G, encoder, identity, perceptual, quiet)
    c = labels(base.c_dim, s.class_idx, 1, dev)
    _, mixed = constraint_rows(base, None, list(s.mix), None, dev, c)
    G = with_blend(base, s.blend, dev, quiet)
    img = photo_image(path, s.align, emit)
    with tracking(log, f"proj-{path.stem}", preview_every=s.save_every) as trk:
        parts = _project_photo(G, img, steps=s.steps, lr=s.lr, space=s.space, perceptual=perceptual_model,
                               mse=s.mse, noise_reg=s.noise_reg, crop=s.crop, init=s.init, encoder=enc, tune=s.tune,
                               tune_steps=s.tune_steps, tune_lr=s.tune_lr, seed=s.seed, save_every=s.save_every,
                               dev=dev, c=c, mix=mixed, quiet=quiet, callback=callback, stop=stop, emit=emit,
                               track=trk, precision=s.precision)
        proj, tuned = parts["projection"], parts["tuned"]
        target_u8, proj_u8 = uint8_image(proj.target), uint8_image(proj.image)
        settings = {"command": "project", **s.to_dict(), "photo": str(path),
                    "network": s.network or ("e4e decoder" if enc else "ffhq"), "lr": proj.config.lr,
                    "mse": proj.config.mse, "class": s.class_idx, "w_avg_samples": proj.config.w_avg_samples,
                    "device": dev, "mixed_rows": sorted(mixed),
                    "init": s.init if parts["start"] is not None else "mean",
                    "tune_steps": s.tune_steps if s.tune else None, "tune_lr": s.tune_lr if s.tune else None}
        extra: dict[str, Any] = {"metrics": proj.metrics, "projection_metrics": proj.metrics, "w_std": proj.w_std,
                                 "noise_maps": list(proj.noise)}
        images = {"target.png": target_u8, "proj.png": proj_u8}
        result_u8 = proj_u8
        if tuned is not None:
            extra["tune_metrics"] = tuned.metrics
            extra["tune_precision"] = tuned.run.precision
            extra["metrics"] = tuned_metrics(tuned.metrics, proj.metrics)
            result_u8 = uint8_image(tuned.image)
            images["tuned.png"] = result_u8
            emit(f"pivotal tuning: PSNR {tuned.metrics['psnr_pivot']:.2f} → {tuned.metrics['psnr_tuned']:.2f} "
                 f"dB, random-w images within {tuned.metrics['locality_psnr_random']:.1f} dB")
        if face_id is not None:
            final = tuned.image if tuned is not None else proj.image
            extra["identity_similarity"] = identity_similarity(face_id, final, proj.target)
            emit(f"identity similarity (ArcFace) to the photo: {extra['identity_similarity']:.4f}")
        arrays, meta = noise_meta(proj.noise)
        if s.blend:
            meta.update({"network": base.describe().get("source"), "blend": s.blend})
        run = PhotoRun(name=f"proj-{path.stem}", result=proj.run, settings=settings, network=G.describe(),
                       c=c if G.c_dim > 0 else None, extra_json=extra, extra_images=images, extra_arrays=arrays,
                       result_image=result_u8, gif_frames=side_by_side_frames(target_u8, proj.run.frames),
                       generator=tuned.G if tuned is not None else None, latent_meta=meta)
        trk.finish(run)  # a no-op when the caller lent its trackers (it finishes after saving)
    return run


def tuned_metrics(tune: dict[str, Any], pivot: dict[str, Any]) -> dict[str, Any]:
    """The result's ``metrics`` after pivotal tuning: the tuned image's PSNR/LPIPS (``psnr_tuned``…) in the
    keys the pivot's metrics use, so ``metrics`` always describes ``result.png``."""
    out = dict(pivot)
    for key in ("psnr", "lpips", "mse"):
        if f"{key}_tuned" in tune:
            out[key] = tune[f"{key}_tuned"]
    return out


def encode(photo: "str | Path | EncodeSettings | None" = None, /, *, G: Any = None, encoder: Any = None,
           identity: Any = None, device: str = "auto", callback: Any = None, stop: Callable[[], bool] | None = None,
           log: Any = None, notify: Notify = None, quiet: bool = True, **options: Any) -> Run:
    """Encode a photo with e4e (Tov et al. 2021): ``ws = E(photo) + latent_avg``, one forward pass.

    The network is the e4e file's own decoder unless ``network`` (or ``G``) is given (it must have the same
    ``num_ws``/``w_dim``). ``photo`` is the photo's path or an :class:`~clipstyle.workflows.photo.EncodeSettings`;
    ``options``, ``G``, ``encoder``, ``identity``, ``device``, ``notify`` as in :func:`project`.

    Returns:
        A :class:`Run` named ``enc-<stem>`` (target.png, proj.png, latents.npz, run.json with mse/psnr and, with
        ``id_weights``, the ArcFace similarity).

    Raises:
        SettingsError (no --encoder…), WeightsFileError, ImageError, AlignmentError, PhotoOptionError.
    """
    import time

    import torch

    from clipstyle.inversion.project import psnr
    from clipstyle.io.images import check_image
    from clipstyle.workflows.photo import EncodeSettings

    encoder, _ = split_models(options, encoder, None)
    s = EncodeSettings.of(photo, **options)
    emit = say_once(notify)
    path = Path(s.photo)
    check_image(path)
    dev, G, enc, face_id, _ = _models(s, device, G, encoder, identity, None, quiet, lpips=False)
    _check_encoder_fits(enc, G)
    img = photo_image(path, s.align, emit)
    t0 = time.perf_counter()
    ws = _encode_photo(enc, img, s.crop, dev)
    seconds = time.perf_counter() - t0
    target = target_tensor(img, G.img_resolution, s.crop, G, dev)
    with torch.no_grad():
        image = G.synthesis(ws, noise_mode="const")
    metrics = {"mse": float((image - target).square().mean()), "psnr": psnr(image, target)}
    extra: dict[str, Any] = {"metrics": metrics, "encode_seconds": seconds}
    if face_id is not None:
        extra["identity_similarity"] = identity_similarity(face_id, image, target)
        emit(f"identity similarity (ArcFace) to the photo: {extra['identity_similarity']:.4f}")
    target_u8, proj_u8 = uint8_image(target), uint8_image(image)
    settings = {"command": "encode", **s.to_dict(), "photo": str(path), "device": dev}
    return PhotoRun(name=f"enc-{path.stem}", result=None, settings=settings, network=G.describe(),
                    ws_=ws.detach().cpu(), images_=proj_u8[None], extra_json=extra,
                    extra_images={"target.png": target_u8, "proj.png": proj_u8}, result_image=proj_u8,
                    gif_frames=(proj_u8,))
