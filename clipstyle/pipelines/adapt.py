"""``clipstyle adapt``: make a new network from two words (StyleGAN-NADA, Gal et al. 2022, arXiv:2108.00946).

A trainable copy of the network is fine-tuned so that, for every latent, the CLIP-space change from the base's
image to the copy's follows the change from ``source`` to ``target`` text (or towards style images); see
:mod:`clipstyle.adapt`. The run folder holds the adapted network (``generator.safetensors``, with its provenance:
base network and sha256, texts, steps, layers), a before/after grid over fixed seeds and ``show`` latents
(``result.png``: base images on top, adapted below), ``progress.gif`` of that grid, ``latents.npz`` with the shown
latents (it names the adapted network, so ``clipstyle render`` of it renders in the new domain) and ``run.json``
with the loss history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipstyle.pipelines.run import Run
from clipstyle.workflows.adapt import AdaptSettings

__all__ = ["ADAPTED_GENERATOR", "AdaptRun", "adapt"]

#: File name of the adapted network inside the run folder.
ADAPTED_GENERATOR = "generator.safetensors"


@dataclass(frozen=True)
class AdaptRun(Run):
    """A :class:`Run` that also writes the adapted network (``generator.safetensors``) with its provenance."""

    generator: Any = None
    provenance: Any = None

    def write_into(self, folder: Path) -> dict[str, Path]:
        from clipstyle.generator.formats.native import PROVENANCE_KEY, save_native
        from clipstyle.inversion.files import add_arrays

        paths = super().write_into(folder)
        paths["generator"] = save_native(self.generator, Path(folder) / ADAPTED_GENERATOR,
                                         meta={PROVENANCE_KEY: dict(self.provenance or {})})
        add_arrays(paths["latents"], {}, {"generator": ADAPTED_GENERATOR})
        return paths


def _guides(settings: AdaptSettings, guide: Any, dev: str) -> list[tuple[Any, float]]:
    from clipstyle.pipelines.common import load_guide

    if guide is not None:
        given = list(guide) if isinstance(guide, (list, tuple)) else [guide]
        weights = settings.clip_weight_values() if len(given) == len(settings.clip_models()) else [1.0] * len(given)
        return list(zip(given, weights))
    return [(load_guide(m, settings.clip_pretrained, dev), w)
            for m, w in zip(settings.clip_models(), settings.clip_weight_values())]


def _critics(settings: AdaptSettings, guides: Sequence[tuple[Any, float]], G: Any, dev: str) -> list[Any]:
    import torch

    from clipstyle.adapt.losses import image_critic, text_critic
    from clipstyle.guidance.losses import load_image_prompt
    from clipstyle.guidance.recipes import load_templates

    if settings.target:
        templates = load_templates() if settings.templates else None
        return [text_critic(g, w, settings.source, settings.target, templates) for g, w in guides]
    gen = torch.Generator().manual_seed(int(settings.seed) + 7)
    z = torch.randn([8, G.z_dim], generator=gen).to(dev)
    with torch.no_grad():
        samples = G.synthesis(G.mapping(z, None, truncation_psi=settings.truncation), noise_mode="const")
    out = []
    for g, w in guides:
        style = torch.cat([load_image_prompt(p, g.input_size) for p in settings.style_images])
        out.append(image_critic(g, w, style, samples))
    return out


def _provenance(settings: AdaptSettings, G: Any, result: Any, guides: Sequence[tuple[Any, float]]) -> dict:
    from clipstyle import __version__
    from clipstyle.generator.formats.native import read_provenance
    from clipstyle.generator.formats.writers import public_source
    from clipstyle.io.cache import sha256_file

    path = Path(str(G.source.path)) if getattr(G.source, "path", "") else None
    sha = sha256_file(path) if path is not None and path.is_file() else None
    parent = read_provenance(path) if path is not None and path.suffix == ".safetensors" and path.is_file() else None
    lineage = [*((parent or {}).get("lineage") or []), *([sha] if sha else [])]
    return {"method": "StyleGAN-NADA directional CLIP loss (Gal et al. 2022)", "clipstyle": __version__,
            "base": public_source(G.source.source or settings.network), "base_sha256": sha, "lineage": lineage,
            "base_kind": G.kind, "source": settings.source, "target": settings.target,
            "style_images": [Path(p).name for p in settings.style_images],
            "steps": result.run.steps_done, "steps_asked": settings.steps, "interrupted": result.run.interrupted,
            "layers": settings.layers, "trained_layers": result.layers.get("layers"), "auto_k": result.layers.get("k"),
            "torgb_frozen": not settings.torgb, "mapping_frozen": True, "batch": settings.batch, "lr": settings.lr,
            "seed": settings.seed, "precision": result.run.precision,
            "clip_models": [str(getattr(g, "model_name", "?")) for g, _ in guides],
            "clip_weights": [w for _, w in guides], "clip_pretrained": settings.clip_pretrained}


def adapt(settings: AdaptSettings | None = None, /, *, G: Any = None, guide: Any = None, device: str = "auto",
          callback: Callable | None = None, stop: Callable[[], bool] | None = None, log: Any = None,
          notify: Callable[[str], None] | None = None, quiet: bool = True, **options: Any) -> Run:
    """Adapt a network to a text (or style images) with the directional CLIP loss (StyleGAN-NADA).

    Args:
        settings: a whole :class:`~clipstyle.workflows.adapt.AdaptSettings`, or None and its fields as keyword
            ``options`` (the CLI's option names: ``adapt(target="pencil sketch", steps=300)``).
        G: a loaded base generator (else ``network`` is loaded); its weights are not modified.
        guide: a loaded :class:`~clipstyle.guidance.CLIPGuide`, or a list of them (else ``clip_model`` is loaded;
            a list as long as the models takes their weights).
        device: ``auto`` (with ``G`` given: G's device), ``cpu``, ``cuda``…; callback: ``(StepInfo, images)``
            after every step; stop: True ends training keeping the best generator so far (Ctrl-C does the same).
        log: experiment trackers (accepted as by every pipeline). notify: receives one-line notes (a stop).
        quiet: no progress bar.

    Returns:
        :class:`AdaptRun` named ``adapt-<target>``: ``generator`` (the adapted network), ``provenance``, ``images``
        the adapted renders of the grid latents (uint8 ``[M, H, W, C]``), ``history`` the loss per step. The same
        settings and seed give bit-identical weights (on one device).

    Raises:
        SettingsError (AdaptSettingsError): bad settings, before anything loads. FamilyError: a network adapt
        cannot train. DirectionError / GuidanceError: texts or style images with no direction. SpecError /
        LatentFileError / BlockSpecError: bad ``seeds``/``show``/``layers`` for this network. CheckpointError,
        DownloadError.
    """
    import numpy as np
    import torch

    from clipstyle.adapt.layers import parse_layers
    from clipstyle.adapt.losses import AdaptLoss
    from clipstyle.adapt.trainer import AdaptConfig, adapt_generator, check_trainable
    from clipstyle.latents.constraints import parse_sources
    from clipstyle.optimize.loop import OptimizeResult
    from clipstyle.pipelines.common import load_network, pick_device
    from clipstyle.pipelines.photo_parts import stage
    from clipstyle.render.files import make_grid
    from clipstyle.tracking import check_log, tracking, with_phase

    settings = AdaptSettings.of(settings, **options)
    check_log(log)  # a bad --log spec or a missing extra: before anything loads
    dev = pick_device(device, G)
    G = load_network(settings.network, dev, G=G, progress=not quiet)
    check_trainable(G)
    rows = parse_layers(settings.layers, G.num_ws, G.block_groups())
    spec = ",".join([settings.seeds, *settings.show])
    shown = parse_sources(spec, G, dev, settings.truncation)
    preview = torch.cat([s.ws for s in shown]).to(dev, torch.float32)  # [M, num_ws, w_dim]
    guides = _guides(settings, guide, dev)
    loss = AdaptLoss(_critics(settings, guides, G, dev), cutouts=settings.cutouts or 0,
                     generator=torch.Generator().manual_seed(int(settings.seed) + 1))
    config = AdaptConfig(steps=settings.steps, batch=settings.batch, lr=settings.lr, rows=rows, k=settings.auto_k,
                         select_steps=settings.select_steps, torgb=settings.torgb, seed=settings.seed,
                         preview_every=settings.preview_every, precision=settings.precision)
    name = "adapt-" + (settings.target or Path(settings.style_images[0]).stem)
    with tracking(log, name, preview_every=settings.preview_every) as trk:
        with stage("adapting", settings.steps, quiet, with_phase(callback, trk)) as cbs:
            result = adapt_generator(G, loss, config, preview=preview, callbacks=cbs, stop=stop)
        if notify is not None and result.run.interrupted and not result.run.stop_reason:
            notify(f"stopped after {result.run.steps_done} steps: kept the weights of step {result.run.best_step}, "
                   "the lowest loss so far")
        before = result.before
        grids = tuple(make_grid(np.concatenate([before, f]), rows=2) for f in result.frames)
        provenance = _provenance(settings, G, result, guides)
        r = result.run
        opt = OptimizeResult(ws=preview.cpu(), best_ws=preview.cpu(), best_loss=r.best_loss, best_step=r.best_step,
                             history=r.history, frames=result.frames, frame_steps=result.frame_steps,
                             interrupted=r.interrupted, seconds=r.seconds, steps_done=r.steps_done,
                             extra={"stop_reason": r.stop_reason}, precision=r.precision)
        extra = {"provenance": provenance, "shown": [s.label for s in shown], "rows_trained": [list(x) for x in
                 result.rows_trained], "trainable_layers": result.layers, "peak_cuda_memory_bytes": result.peak_memory}
        images = {"before.png": make_grid(before), "after.png": make_grid(result.frames[-1])}
        run = AdaptRun(name=name, result=opt, settings={"command": "adapt", **settings.to_dict(), "device": dev},
                       network=G.describe(), extra_json=extra, extra_images=images, result_image=grids[-1],
                       gif_frames=grids, fps=settings.fps, generator=result.G, provenance=provenance)
        trk.finish(run)  # a no-op when the caller lent its trackers (it finishes after saving)
    return run
