"""Directions without labels as workflows: ``direction sefa`` (Shen & Zhou 2021) and ``direction pca``
(GANSpace, Härkönen et al. 2020). The maths is in :mod:`clipstyle.latents.factorization`.

Each writes its directions in GANSpace's file layout (to ``settings.out`` and into the run folder's
``latents.npz``, both readable by ``direction apply --component K --sigma S``) and a contact sheet: one row per
direction, one column per strength (in standard deviations of w along it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.pipelines.run import Run

__all__ = ["contact_sheet", "pca_directions", "sefa_directions"]


def contact_sheet(G: Any, w0: torch.Tensor, comp: np.ndarray, std: np.ndarray, strengths: list[float],
                  rows: tuple[int, ...] | None, count: int, noise_mode: str = "const") -> np.ndarray:
    """Images of ``w0 + s·std_k·comp_k`` (on ``rows`` of ws; default all) for the first ``count`` directions k and
    every strength s → uint8 grid ``[count·H, len(strengths)·W, C]`` (rows: directions; columns: strengths)."""
    from clipstyle.latents.directions import apply_direction
    from clipstyle.latents.styleblocks import render_ws
    from clipstyle.render.files import make_grid

    frames = []
    for k in range(min(count, comp.shape[0])):
        d = torch.from_numpy((comp[k] * std[k]).astype(np.float32))
        ws = apply_direction(w0, d, strengths, rows)
        frames.append(render_ws(G, ws, noise_mode))
    return make_grid(np.concatenate(frames), rows=len(frames))


def _finish(kind: str, settings: Any, G: Any, c: Any, w0: torch.Tensor, dev: str, total_variance: float | None,
            extra: dict) -> Run:
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents.factorization import save_ganspace
    from clipstyle.latents.styleblocks import factors

    strengths = factors(-settings.sheet_sigma, settings.sheet_sigma, settings.frames)
    sheet = (contact_sheet(G, w0, c.comp, c.std, strengths, c.rows if kind == "sefa" else extra["rows"],
                           settings.sheet) if settings.sheet else None)
    meta = {"method": kind, "network": G.source.source, **extra}
    if settings.out:
        refuse_overwrite(settings.out, settings.overwrite)
        save_ganspace(settings.out, c, total_variance=total_variance, **meta)
    k = c.comp.shape[0]
    ratio = c.values / total_variance if total_variance else c.values / c.values.sum()
    arrays = {"lat_comp": c.comp.reshape(k, 1, -1).astype(np.float32), "lat_mean": c.mean.reshape(1, -1).astype(np.float32),
              "lat_stdev": c.std.astype(np.float32), "var_ratio": ratio.astype(np.float32)}
    from clipstyle.optimize.loop import to_uint8_frames

    with torch.no_grad():
        start = to_uint8_frames(G.synthesis(w0.to(dev)))[0]
    return Run(name=f"{kind}-{G.source.source and Path(G.source.source).stem or G.kind}", result=None,
               settings=settings.to_dict(), network=G.describe(), ws_=w0.cpu(), images_=start[None],
               result_image=sheet if sheet is not None else start,
               extra_images={"sheet.png": sheet} if sheet is not None else {}, extra_arrays=arrays,
               extra_json={"values": [float(v) for v in c.values], "std": [float(v) for v in c.std],
                           "strengths": strengths, "out": settings.out or None, **extra})


def _start(G: Any, settings: Any, dev: str) -> torch.Tensor:
    from clipstyle.latents import seed_z
    from clipstyle.pipelines.common import labels

    z = torch.from_numpy(seed_z(settings.sheet_seed, G.z_dim)).to(dev, torch.float32)
    with torch.no_grad():
        return G.mapping(z, labels(G.c_dim, None, 1, dev), truncation_psi=settings.truncation)


def sefa_directions(settings: Any = None, /, *, G: Any = None, device: str = "auto", callback: Callable | None = None,
                    stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True, **options: Any) -> Run:
    """SeFa's top ``settings.top`` directions for the layers of ``settings.blocks``
    (:func:`clipstyle.latents.factorization.sefa`); ``settings`` is a :class:`~clipstyle.workflows.global_edit.SefaSettings`
    (or give its options by name) → :class:`Run` named ``sefa-<network>``: ``sheet.png``
    (= ``result.png``), ``latents.npz`` (the sheet's start ws + the GANSpace arrays), ``run.json`` (eigenvalues,
    std); ``settings.out`` written in GANSpace's layout.

    Raises:
        BlockSpecError: bad blocks. UsageError: --top out of range. FileExistsError-like UsageError: --out exists
        without --overwrite.
    """
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents import parse_blocks
    from clipstyle.latents.factorization import sefa
    from clipstyle.pipelines.common import load_network, pick_device

    from clipstyle.workflows.global_edit import SefaSettings

    settings = SefaSettings.of(settings, **options)
    if settings.out:
        refuse_overwrite(settings.out, settings.overwrite)
    dev = pick_device(device, G)
    G = load_network(settings.network, dev, G=G, progress=not quiet)
    rows = None if settings.blocks is None else tuple(parse_blocks(settings.blocks, G.num_ws, G.block_groups()))
    c = sefa(G, settings.top, rows, settings.std_samples, settings.sheet_seed)
    return _finish("sefa", settings, G, c, _start(G, settings, dev), dev, None,
                   {"rows": list(rows) if rows is not None else None})


def pca_directions(settings: Any = None, /, *, G: Any = None, device: str = "auto", callback: Callable | None = None,
                    stop: Callable[[], bool] | None = None, log: Any = None, quiet: bool = True, **options: Any) -> Run:
    """GANSpace's principal components of ``settings.samples`` sampled w
    (:func:`clipstyle.latents.factorization.pca_w`) → :class:`Run` named ``pca-<network>`` as for
    :func:`sefa_directions`; ``var_ratio`` is each component's share of the total variance of w.

    Raises:
        BlockSpecError: bad blocks. UsageError: --components out of range, --out exists without --overwrite.
    """
    from clipstyle.io.files import refuse_overwrite
    from clipstyle.latents import parse_blocks
    from clipstyle.latents.factorization import pca_w, sample_w
    from clipstyle.pipelines.common import load_network, pick_device

    from clipstyle.workflows.global_edit import PcaSettings

    settings = PcaSettings.of(settings, **options)
    if settings.out:
        refuse_overwrite(settings.out, settings.overwrite)
    dev = pick_device(device, G)
    G = load_network(settings.network, dev, G=G, progress=not quiet)
    rows = None if settings.blocks is None else tuple(parse_blocks(settings.blocks, G.num_ws, G.block_groups()))
    w = sample_w(G, settings.samples, settings.sheet_seed)
    c = pca_w(w, settings.components)
    total = float(w.var(axis=0, ddof=1).sum())
    return _finish("pca", settings, G, c, _start(G, settings, dev), dev, total,
                   {"rows": list(rows) if rows is not None else None, "samples": settings.samples})
