"""Directions found without labels, in W: SeFa and GANSpace's PCA, and GANSpace's file layout.

* **SeFa** (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs", §3.2, eq. 5): the
  affine maps ``s = A·w + b`` of the chosen layers change the most along the unit ``n`` maximizing
  ``‖A n‖²``; the k best are the eigenvectors of ``AᵀA`` (A: the chosen layers' effective affine weights
  stacked row-wise) with the largest eigenvalues.
* **PCA** (Härkönen et al. 2020, "GANSpace: Discovering Interpretable GAN Controls", §2.1): principal
  components of ``w = f(z)`` for sampled ``z``; the ``std`` of component k is that of the samples' projection.

Both are written as GANSpace writes its cache (``lat_comp`` ``[K, 1, w_dim]``, ``lat_mean`` ``[1, w_dim]``,
``lat_stdev`` ``[K]``, plus ``var_ratio`` ``[K]``), which :func:`clipstyle.latents.directions.load_direction`
reads with ``--component K --sigma S``. Signs are fixed so that each vector's largest-magnitude entry is positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.errors import UsageError

__all__ = ["Components", "fix_signs", "pca_w", "sample_w", "save_ganspace", "sefa", "sefa_matrix"]


@dataclass(frozen=True)
class Components:
    """Unit directions in W, float64 ``comp [K, w_dim]`` (rows orthonormal), ``std [K]`` (standard deviation of
    sampled w along each), ``values [K]`` (eigenvalues of AᵀA, or variances for PCA), ``mean [w_dim]``,
    ``rows``: the styleblocks they were found for (None: all)."""

    comp: np.ndarray
    std: np.ndarray
    values: np.ndarray
    mean: np.ndarray
    rows: tuple[int, ...] | None = None


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each row of ``[K, D]`` so that its largest-magnitude entry is positive (a deterministic sign)."""
    idx = np.abs(vectors).argmax(axis=1)
    signs = np.sign(vectors[np.arange(vectors.shape[0]), idx])
    signs[signs == 0] = 1
    return vectors * signs[:, None]


def sefa_matrix(G: Any, rows: Sequence[int] | None = None) -> np.ndarray:
    """``AᵀA`` float64 ``[w_dim, w_dim]``: A the effective weights (``weight · weight_gain``) of the affines fed by
    ``rows`` of ``ws`` (default all), stacked row-wise."""
    chosen = None if rows is None else {int(r) for r in rows}
    mats = [s.affine.weight.detach().double().cpu() * s.affine.weight_gain for s in G.style_sites()
            if chosen is None or s.ws_index in chosen]
    if not mats:
        raise UsageError(f"no modulated layer is driven by the styleblocks {sorted(chosen or [])}")
    a = torch.cat(mats).numpy()                                           # [sum of widths, w_dim]
    return a.T @ a


@torch.no_grad()
def sample_w(G: Any, samples: int, seed: int = 0, batch: int = 10_000) -> np.ndarray:
    """``samples`` w = mapping(z) (no truncation), ``z`` from ``torch.Generator().manual_seed(seed)`` on the CPU →
    float64 ``[samples, w_dim]``. Conditional networks get a uniformly random class per sample."""
    from clipstyle.latents.stylespace import sample_ws

    gen = torch.Generator().manual_seed(int(seed))
    out = [sample_ws(G, min(batch, samples - i), gen)[:, 0].double().cpu().numpy() for i in range(0, samples, batch)]
    return np.concatenate(out)


def sefa(G: Any, top: int = 10, rows: Sequence[int] | None = None, std_samples: int = 10_000,
         seed: int = 0) -> Components:
    """SeFa's top directions for the layers of ``rows`` (see the module docstring): eigenvectors of AᵀA
    (``numpy.linalg.eigh``) by decreasing eigenvalue; ``std`` of sampled w along each.

    Raises:
        UsageError: ``top`` out of 1…w_dim, or rows that drive no modulated layer.
    """
    if not 1 <= top <= G.w_dim:
        raise UsageError(f"--top must be in 1-{G.w_dim}, got {top}")
    vals, vecs = np.linalg.eigh(sefa_matrix(G, rows))                    # ascending
    order = np.argsort(vals)[::-1][:top]
    comp = fix_signs(vecs[:, order].T)                                    # [K, w_dim]
    w = sample_w(G, std_samples, seed)
    mean = w.mean(0)
    std = ((w - mean) @ comp.T).std(axis=0, ddof=1)
    return Components(comp, std, vals[order], mean, None if rows is None else tuple(int(r) for r in rows))


def pca_w(w: np.ndarray, components: int) -> Components:
    """Principal components of samples ``w`` ``[M, w_dim]`` (SVD of the centred samples), by decreasing variance.

    Raises:
        UsageError: ``components`` out of 1…min(M, w_dim).
    """
    m, d = w.shape
    if not 1 <= components <= min(m, d):
        raise UsageError(f"--components must be in 1-{min(m, d)}, got {components}")
    mean = w.mean(0)
    _, sv, vt = np.linalg.svd(w - mean, full_matrices=False)
    comp = fix_signs(vt[:components])
    var = sv[:components] ** 2 / (m - 1)
    return Components(comp, np.sqrt(var), var, mean)


def save_ganspace(path: str | Path, c: Components, *, total_variance: float | None = None, **meta: Any) -> Path:
    """Write ``c`` atomically in GANSpace's cache layout (see the module docstring); ``meta`` as a JSON string."""
    import json

    from clipstyle.io.files import atomic_save_npz

    k = c.comp.shape[0]
    ratio = c.values / total_variance if total_variance else c.values / c.values.sum()
    return atomic_save_npz(path, lat_comp=c.comp.reshape(k, 1, -1).astype(np.float32),
                           lat_mean=c.mean.reshape(1, -1).astype(np.float32),
                           lat_stdev=c.std.astype(np.float32), var_ratio=ratio.astype(np.float32),
                           meta=json.dumps(meta))
