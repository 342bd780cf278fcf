"""Projecting one photo, the stage that ``project`` and ``edit`` share: the e4e start (Tov et al. 2021), the
StyleGAN2 projector in W (Karras et al. 2020, App. D) and pivotal tuning (PTI, Roich et al. 2022)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clipstyle.pipelines.photo_parts import PhotoOptionError, projection_config, stage, target_tensor

__all__ = ["check_encoder_fits", "encode_photo", "project_photo"]


def encode_photo(encoder: Any, img: Any, crop: bool, dev: str) -> Any:
    """e4e codes ``[1, num_ws, w_dim]`` of a PIL photo (at the encoder's 256² input)."""
    import torch

    with torch.no_grad():
        return encoder(target_tensor(img, 256, crop, None, dev))


def check_encoder_fits(encoder: Any, G: Any) -> None:
    """PhotoOptionError unless the encoder's ``[num_ws, w_dim]`` latents fit the generator's."""
    if (encoder.num_ws, encoder.w_dim) != (G.num_ws, G.w_dim):
        raise PhotoOptionError(f"--encoder makes [{encoder.num_ws}, {encoder.w_dim}] latents but the network needs "
                               f"[{G.num_ws}, {G.w_dim}]; use the e4e file's own decoder (omit --network)")


def project_photo(G: Any, img: Any, *, steps: int, lr: float | None, space: str, perceptual: Any,
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
            check_encoder_fits(encoder, G)
            start = encode_photo(encoder, img, crop, dev)
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
