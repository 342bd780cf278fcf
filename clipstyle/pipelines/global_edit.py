"""StyleCLIP's global directions as a workflow (``clipstyle direction global``, the UI's *Global edit* tab,
batch jobs ``direction-global``): Patashnik et al. 2021, §6.

The channel relevance ``Δi_c`` comes from a file (ours, StyleCLIP's ``fs3.npy``, HyperStyle's
``delta_i_c.npy``) or is computed once per network and CLIP model (:mod:`clipstyle.guidance.global_directions`,
cached and resumable); then each text pair is a direction in StyleSpace and an edit is one forward pass
(:class:`GlobalEditor`, which the UI keeps between slider moves).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from clipstyle.optimize.loop import StepInfo
from clipstyle.pipelines.run import Run

__all__ = ["GlobalEditor", "global_edit", "load_relevance"]


def load_relevance(settings: Any, G: Any, guide: Any, *, callback: Callable | None = None,
                   stop: Callable[[], bool] | None = None, cache_dir: Any = None) -> Any:
    """The :class:`~clipstyle.guidance.global_directions.Relevance` a run uses: ``settings.relevance`` read, or
    computed (cached, resumed) with the settings' ``samples``, ``k``, ``include_torgb``… ``callback`` gets a
    :class:`StepInfo` per group of channels (``step`` = channels done − 1, ``steps`` = channels)."""
    from clipstyle.guidance.global_directions import (
        RelevanceConfig,
        compute_relevance,
        read_relevance,
    )

    if settings.relevance:
        return read_relevance(settings.relevance, G, guide.embed_dim)
    cfg = RelevanceConfig(samples=settings.samples, k=settings.k, seed=settings.relevance_seed,
                          include_torgb=settings.include_torgb, stat_samples=settings.stat_samples,
                          batch=settings.relevance_batch, precision=settings.relevance_precision)
    t0 = time.perf_counter()
    progress = None
    if callback is not None:
        def progress(done: int, total: int) -> None:
            callback(StepInfo(max(done - 1, 0), total, 0.0, 0.0, {}, time.perf_counter() - t0), None)
    return compute_relevance(G, guide, cfg, cache_dir=cache_dir, progress=progress, stop=stop)


class GlobalEditor:
    """A network, a CLIP model and a relevance, ready for real-time edits.

    ``direction(source, target, beta)`` → :class:`~clipstyle.latents.stylespace.GlobalDirection` (the text
    embeddings are cached per pair); ``render(ws, direction, alphas)`` → float ``[A·N, 3, H, W]`` in [-1, 1].
    """

    def __init__(self, G: Any, guide: Any, relevance: Any) -> None:
        from clipstyle.guidance.recipes import load_templates

        self.G, self.guide, self.relevance = G, guide, relevance
        self.delta_i, self.covered = relevance.full(G)
        self.templates = load_templates()
        self._texts: dict[tuple[str, str], torch.Tensor] = {}

    def delta_t(self, source: str, target: str) -> torch.Tensor:
        """Unit text direction ``[D]`` with prompt ensembling over the shipped templates (Radford et al. 2021,
        §3.1.4), as StyleCLIP does."""
        from clipstyle.latents.directions import text_delta

        key = (source, target)
        if key not in self._texts:
            self._texts[key] = text_delta(self.guide, source, target, self.templates).float().cpu()
        return self._texts[key]

    def direction(self, source: str, target: str, beta: float) -> Any:
        from clipstyle.latents.stylespace import global_direction

        return global_direction(self.delta_i, self.delta_t(source, target), self.relevance.std, beta, self.covered)

    @torch.no_grad()
    def render(self, ws: torch.Tensor, direction: torch.Tensor, alphas: list[float],
               noise_mode: str = "const", batch: int = 8) -> torch.Tensor:
        """Images of every latent of ``ws`` ``[N, num_ws, w_dim]`` at every α, α-major: ``[A·N, 3, H, W]``."""
        from clipstyle.generator.stylespace import flatten_styles, style_layers
        from clipstyle.latents.stylespace import edit_flat, render_flat

        dev = self.G.w_avg.device
        layers = style_layers(self.G)
        out = []
        for n in range(ws.shape[0]):
            w = ws[n:n + 1].to(dev)
            s0 = flatten_styles(self.G.styles(w), layers)
            flat = edit_flat(s0, direction, alphas)                       # [A, C]
            for i in range(0, flat.shape[0], batch):
                out.append(render_flat(self.G, w, flat[i:i + batch], noise_mode).cpu())
        imgs = torch.cat(out)                                             # [N·A, 3, H, W], latent-major
        a = len(alphas)
        return imgs.reshape(ws.shape[0], a, *imgs.shape[1:]).transpose(0, 1).reshape(-1, *imgs.shape[1:])


def global_edit(settings: Any = None, source: str | None = None, target: str | None = None, /, *, G: Any = None,
                guide: Any = None, device: str = "auto", callback: Callable | None = None,
                stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True, cache_dir: Any = None,
                **options: Any) -> Run:
    """Edit LATENTS from SOURCE to TARGET with StyleCLIP's global direction (Patashnik et al. 2021, §6).

    ``global_edit(settings)`` or ``global_edit("face.npz", "a face", "a face with a beard", alpha=3, beta=0.12)``.

    Args:
        settings: :class:`~clipstyle.workflows.global_edit.GlobalEditSettings` (or LATENTS, then SOURCE, TARGET
            and the other options by name).
        G, guide: loaded models (else loaded from the settings). callback: progress of a relevance computation
            (:class:`StepInfo`, ``None``). stop: True ends a relevance computation early (partial result kept in
            the cache; the edit then uses the channels done, and ``run.json`` says ``relevance_complete: false``).

    Returns:
        :class:`Run` named ``global-<target>``: ``result.png`` (edited at α), ``strip.png`` (rows: latents;
        columns: α from −α to α), ``strip.gif``, ``before.png``, ``latents.npz`` (the latents, plus
        ``s_direction`` / ``s_layout`` — read by ``direction apply`` — ``relevance`` and ``styles_edited``),
        ``run.json`` (``channels``: the most relevant channels used, with layer, kind, index and relevance).

    Raises:
        SpecError / LatentFileError: LATENTS. RelevanceFileError: ``--relevance``. DirectionError: texts with the
        same embedding.
    """
    from clipstyle.generator.stylespace import (
        channel_table,
        flatten_styles,
        style_layers,
    )
    from clipstyle.latents.constraints import parse_source
    from clipstyle.latents.styleblocks import factors
    from clipstyle.latents.stylespace import LAYOUT_KEY, S_KEY, edit_flat, s_layout
    from clipstyle.optimize.loop import to_uint8_frames
    from clipstyle.pipelines.common import (
        check_noise_mode,
        labels,
        load_guide,
        load_network,
        pick_device,
    )
    from clipstyle.render.files import make_grid
    from clipstyle.workflows.global_edit import GlobalEditSettings

    settings = GlobalEditSettings.of(settings, source, target, **options)
    nm = check_noise_mode(settings.noise_mode)
    dev = pick_device(device, G)
    G = load_network(settings.resolved_network(), dev, G=G, progress=not quiet)
    sources = parse_source(settings.latents, G, dev, settings.truncation, labels(G.c_dim, None, 1, dev))
    ws = torch.cat([s.ws for s in sources]).to(dev, torch.float32)       # [N, num_ws, w_dim]
    guide = load_guide(settings.clip_model, settings.clip_pretrained, dev, guide)
    relevance = load_relevance(settings, G, guide, callback=callback, stop=stop, cache_dir=cache_dir)
    editor = GlobalEditor(G, guide, relevance)
    t0 = time.perf_counter()
    gd = editor.direction(settings.source, settings.target, settings.beta)
    alphas = factors(-settings.alpha, settings.alpha, settings.frames) if settings.frames > 1 else [settings.alpha]
    imgs = editor.render(ws, gd.direction, [settings.alpha, *alphas], nm)
    n = ws.shape[0]
    edit_seconds = time.perf_counter() - t0
    edited = to_uint8_frames(imgs[:n])                                    # [N, H, W, C]
    strip = to_uint8_frames(imgs[n:])                                     # [A·N, H, W, C], α-major
    a = len(alphas)
    by_row = strip.reshape(a, n, *strip.shape[1:]).transpose(1, 0, 2, 3, 4).reshape(-1, *strip.shape[1:])
    with torch.no_grad():
        before = to_uint8_frames(G.synthesis(ws, noise_mode=nm))
        s0 = flatten_styles(G.styles(ws), style_layers(G)).cpu()
    table = channel_table(G)
    used = [{"flat": c, "layer": table[c].layer, "kind": table[c].kind, "part": table[c].part,
             "resolution": table[c].resolution, "index": table[c].index,
             "relevance": round(float(gd.relevance[c]), 5)} for c in gd.channels[:settings.report_channels]]
    frames = [make_grid(strip[i * n:(i + 1) * n]) if n > 1 else strip[i] for i in range(a)]
    label = sources[0].label if n == 1 else f"{n} latents"
    extra_json = {"channels_used": len(gd.channels), "channels": used, "relevance_source": relevance.source,
                  "relevance_complete": relevance.complete, "edit_ms": round(1000 * edit_seconds, 2),
                  "alphas": alphas, "source_label": label}
    arrays = {S_KEY: gd.direction.numpy(), LAYOUT_KEY: np.asarray(s_layout(style_layers(G))),
              "relevance": gd.relevance.numpy(),
              "styles_edited": edit_flat(s0[:1], gd.direction, [settings.alpha]).numpy() if n == 1 else
              torch.cat([edit_flat(s0[i:i + 1], gd.direction, [settings.alpha]) for i in range(n)]).numpy()}
    return Run(name=f"global-{settings.target}", result=None, settings=settings.to_dict(), network=G.describe(),
               ws_=ws.cpu(), images_=edited, result_image=make_grid(edited) if n > 1 else edited[0],
               gif_frames=tuple(frames), fps=settings.fps,
               extra_images={"strip.png": make_grid(by_row, rows=n), "before.png": make_grid(before) if n > 1 else before[0]},
               extra_gifs={"strip.gif": frames}, extra_arrays=arrays, extra_json=extra_json,
               meta={"alpha": settings.alpha, "beta": settings.beta, "source": settings.source,
                     "target": settings.target})
