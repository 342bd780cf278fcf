"""W → Z: invert StyleGAN's mapping network for a given w (or each row of a W+ latent).

The mapping network (Karras et al. 2019, §2; the same in StyleGAN2/3) is

    x₀ = [ z / rms(z) , e(c) / rms(e(c)) ]        (e = class embedding; only for conditional networks)
    x_{i+1} = φ(A_i x_i + b_i),  i = 0 … L−1,      w = x_L
    w_trunc = w_avg + ψ · (w − w_avg)               (truncation)

with φ = √2 · leaky-ReLU(slope 0.2) and equalized-lr effective weights ``A_i = weight · weight_gain``,
``b_i = bias · bias_gain``. Every step is invertible when the layers are square: undo truncation
(``w = w_avg + (w_trunc − w_avg)/ψ``), then for i = L−1 … 0 undo φ (``a = y/√2``; ``a/0.2`` where negative)
and solve ``A_i x = a − b_i`` (float64, :func:`torch.linalg.solve`; :func:`torch.linalg.lstsq` for
non-square layers, which is reported). For a conditional network the embedding part of x₀ is known and
its contribution ``A_0[:, z_dim:] e`` is subtracted first. Because of the normalisation only the
direction of z is recoverable: the result is put on the sphere of radius √z_dim.

The algebraic solution is then refined by Levenberg–Marquardt in float64 on
``Σ_rows ‖trunc(mapping(z)) − w_row‖²`` (it matters when w is not exactly in the range of the mapping,
e.g. a projected W+ latent).

Conditioning: the backward solve multiplies errors in w by roughly the product of the layers' condition
numbers. Deep mappings can crush some directions of z (for the random 8-layer test network, 18 of the
64 singular values of dF/dz are below 1e-5), so the float32 rounding of a stored w (~1e-7) can already
hide part of z: then the reported residual stays large. The residual is always reported honestly; pass
w in float64 when you have it (``G.mapping(z.double(), c.double())`` computes it with the same weights).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clipstyle.errors import UsageError
from clipstyle.generator.base import normalize_2nd_moment

__all__ = ["MappingInversion", "invert_mapping", "mapping_residual"]


@dataclass(frozen=True)
class MappingInversion:
    """Result of :func:`invert_mapping`.

    Attributes:
        z: ``[N, z_dim]`` float32, on the sphere of radius √z_dim — the best single z for each latent.
        residual: ``[N]`` float64, relative residual ``‖trunc(mapping(z)) − w‖ / ‖w‖`` over all given rows.
        row_z: ``[N, num_ws, z_dim]`` float32, one z per row of a W+ input (``None`` for a ``[N, w_dim]`` input).
        row_residual: ``[N, num_ws]`` float64, each row's relative residual with its own z (or ``None``).
        algebraic_residual: ``[N]`` the residual of the algebraic solution before refinement.
        least_squares_layers: indices of mapping layers that were not square (solved by least squares).
        notes: human-readable remarks (non-square layers, underdetermined solves, refinement outcome).
        truncation_psi: the ψ that was undone.
    """

    z: Tensor
    residual: Tensor
    row_z: Tensor | None
    row_residual: Tensor | None
    algebraic_residual: Tensor
    least_squares_layers: tuple[int, ...]
    notes: tuple[str, ...]
    truncation_psi: float


def _layers(mapping: Any) -> list[Any]:
    num = getattr(getattr(mapping, "cfg", None), "num_layers", None)
    layers = []
    i = 0
    while hasattr(mapping, f"fc{i}") and (num is None or i < num):
        layers.append(getattr(mapping, f"fc{i}"))
        i += 1
    if not layers:
        raise UsageError("cannot invert this mapping network: it has no fc0…fc{L-1} layers")
    return layers


def _effective(fc: Any) -> tuple[Tensor, Tensor | None]:
    A = fc.weight.detach().to(torch.float64) * fc.weight_gain
    b = fc.bias.detach().to(torch.float64) * fc.bias_gain if fc.bias is not None else None
    return A, b


def _inverse_activation(y: Tensor, act: str) -> Tensor:
    from clipstyle.kernels.bias_act import activation

    if act == "linear":
        return y
    if act != "lrelu":
        raise UsageError(f"cannot invert a mapping layer with activation {act!r} (only lrelu and linear)")
    spec = activation(act)
    a = y / spec.def_gain
    return torch.where(a >= 0, a, a / spec.def_alpha)


def _solve(A: Tensor, rhs: Tensor) -> Tensor:
    """x ``[M, in]`` with ``A x_m = rhs_m`` for A ``[out, in]``, rhs ``[M, out]`` (least squares if not square)."""
    if A.shape[0] == A.shape[1]:
        return torch.linalg.solve(A, rhs.T).T
    return torch.linalg.lstsq(A, rhs.T, driver="gelsd" if A.device.type == "cpu" else None).solution.T


def _class_embedding(mapping: Any, c: Tensor | None, m: int) -> Tensor | None:
    embed = getattr(mapping, "embed", None)
    if embed is None or mapping.c_dim == 0:
        return None
    y = embed(c.to(torch.float64).expand(m, -1))
    if getattr(getattr(mapping, "cfg", None), "normalize_embed", True):
        y = normalize_2nd_moment(y)
    return y


@torch.no_grad()
def _algebraic(mapping: Any, w: Tensor, c: Tensor | None) -> tuple[Tensor, list[int], list[str]]:
    """Invert un-truncated w ``[M, w_dim]`` (float64) → z ``[M, z_dim]`` on the √z_dim sphere."""
    layers = _layers(mapping)
    z_dim = mapping.z_dim
    lsq, notes = [], []
    x = w
    for i in reversed(range(len(layers))):
        fc = layers[i]
        A, b = _effective(fc)
        a = _inverse_activation(x, fc.activation)
        rhs = a - b if b is not None else a
        if i == 0:
            y = _class_embedding(mapping, c, w.shape[0])
            if y is not None:
                rhs = rhs - y @ A[:, z_dim:].T
            A = A[:, :z_dim]
        if A.shape[0] != A.shape[1]:
            lsq.append(i)
            kind = "overdetermined" if A.shape[0] > A.shape[1] else "underdetermined: the solution is not unique"
            notes.append(f"mapping layer fc{i} is {A.shape[0]}×{A.shape[1]}, solved by least squares ({kind})")
        x = _solve(A, rhs)
    return _to_sphere(x), sorted(lsq), notes


def _truncate(w: Tensor, w_avg: Tensor, psis: Tensor) -> Tensor:
    """``w [M, w_dim]`` → ``[M, R, w_dim]`` with row r truncated by ``psis[r]``."""
    return w_avg + psis[None, :, None] * (w[:, None, :] - w_avg)


def _mapped(m64: Any, z: Tensor, c: Tensor | None) -> Tensor:
    """Un-truncated ``mapping(z, c)`` row ``[M, w_dim]`` (float64)."""
    cc = None if c is None else c.expand(z.shape[0], -1)
    return m64(z, cc, truncation_psi=1.0)[:, 0]


def _objective(m64: Any, z: Tensor, c: Tensor | None, targets: Tensor, psis: Tensor) -> Tensor:
    """Per-item ``Σ_rows ‖trunc_row(mapping(z)) − target_row‖²``; targets ``[M, R, w_dim]``."""
    return (_truncate(_mapped(m64, z, c), m64.w_avg, psis) - targets).square().sum(dim=(1, 2))


def _jacobian(m64: Any, z: Tensor, c: Tensor | None) -> Tensor:
    """``d mapping(z) / dz`` per item, ``[M, w_dim, z_dim]`` (float64), by the chain rule through the layers:
    ``J = Π_i diag(φ'(a_i)) A_i · A_0[:, :z_dim] · dN/dz`` with ``N(z) = z·m^{-1/2}``, ``m = mean(z²) + 1e-8``,
    ``dN/dz = m^{-1/2} (I − z zᵀ / (z_dim·m))``."""
    from clipstyle.kernels.bias_act import activation

    d = z.shape[1]
    msq = z.square().mean(dim=1, keepdim=True) + 1e-8                      # [M, 1]
    x = z * msq.rsqrt()
    eye = torch.eye(d, dtype=z.dtype)
    J = msq.rsqrt()[:, :, None] * (eye - z[:, :, None] * z[:, None, :] / (d * msq[:, :, None]))  # [M, d, d]
    y = _class_embedding(m64, c, z.shape[0])
    if y is not None:
        x = torch.cat([x, y], dim=1)
    for i, fc in enumerate(_layers(m64)):
        A, b = _effective(fc)
        a = x @ A.T + (b if b is not None else 0)
        J = (A[:, :d] if i == 0 else A) @ J
        if fc.activation == "lrelu":
            spec = activation("lrelu")
            slope = torch.where(a >= 0, torch.ones_like(a), torch.full_like(a, spec.def_alpha)) * spec.def_gain
            x, J = torch.where(a >= 0, a, a * spec.def_alpha) * spec.def_gain, slope[:, :, None] * J
        elif fc.activation == "linear":
            x = a
        else:
            raise UsageError(f"cannot invert a mapping layer with activation {fc.activation!r} (only lrelu and linear)")
    return J


def _to_sphere(z: Tensor) -> Tensor:
    return z * (math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True).clamp_min(1e-300))


@torch.no_grad()
def _refine(m64: Any, z0: Tensor, c: Tensor | None, targets: Tensor, psis: Tensor, steps: int,
            tol: float = 1e-22) -> Tensor:
    """Levenberg–Marquardt (damped Gauss–Newton, float64) on ``Σ_rows ‖ψ_r(F(z) − w_avg) + w_avg − w_r‖²``.

    With ``J = dF/dz``, ``r_eff = Σ_r ψ_r · residual_r`` and ``s = Σ_r ψ_r²`` the step solves
    ``(s·JᵀJ + μ·mean(diag)·I) δ = −Jᵀ r_eff``; z + δ is put back on the √z_dim sphere (F does not see the
    radius) and kept only if the objective falls, μ shrinks on success and grows on failure, per item.
    Directions that F crushes get no step, so the result stays closest to the start there.
    """
    if steps <= 0:
        return z0
    z = z0.clone()
    cost = _objective(m64, z, c, targets, psis)
    norm = targets.square().sum(dim=(1, 2)).clamp_min(1e-300)
    mu = torch.full_like(cost, 1e-3)
    s = psis.square().sum()
    eye = torch.eye(z.shape[1], dtype=z.dtype)
    w_avg = m64.w_avg
    for _ in range(steps):
        active = (cost / norm > tol) & (mu < 1e10)
        if not bool(active.any()):
            break
        idx = torch.nonzero(active).flatten()
        zi = z[idx]
        ci = c if c is None or c.shape[0] == 1 else c[idx]
        J = _jacobian(m64, zi, ci)                                       # [m, w_dim, z_dim]
        res = _truncate(_mapped(m64, zi, ci), w_avg, psis) - targets[idx]  # [m, R, w_dim]
        r_eff = (psis[None, :, None] * res).sum(dim=1)                    # [m, w_dim]
        H = s * J.transpose(1, 2) @ J
        g = (J.transpose(1, 2) @ r_eff[..., None])[..., 0]
        damp = (mu[idx] * H.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-300))[:, None, None]
        try:
            step = torch.linalg.solve(H + damp * eye, -g[..., None])[..., 0]
        except RuntimeError:
            mu[idx] = mu[idx] * 10
            continue
        zn = _to_sphere(zi + step)
        cn = _objective(m64, zn, ci, targets[idx], psis)
        ok = torch.isfinite(cn) & (cn < cost[idx])
        z[idx] = torch.where(ok[:, None], zn, zi)
        cost[idx] = torch.where(ok, cn, cost[idx])
        mu[idx] = torch.where(ok, (mu[idx] / 3).clamp_min(1e-15), mu[idx] * 4)
    return z


@torch.no_grad()
def _global_search(m64: Any, z_cur: Tensor, c: Tensor | None, targets: Tensor, psis: Tensor, starts: int,
                   hops: int, steps: int, seed: int) -> Tensor:
    """Escape Levenberg–Marquardt's local minima (the mapping is piecewise linear: every kink of its leaky
    ReLUs can trap a local method). Per item: LM from ``starts`` seeded random points of the √z_dim sphere,
    the best of those and ``z_cur`` kept, then ``hops`` rounds of basin hopping (a random kick of
    decreasing size, LM, accept when the objective falls). Returns ``[M, z_dim]``, never worse than ``z_cur``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    out = z_cur.clone()
    d = z_cur.shape[1]
    for i in range(z_cur.shape[0]):
        ci = c if c is None or c.shape[0] == 1 else c[i:i + 1]
        tgt = targets[i:i + 1]
        best = z_cur[i:i + 1]
        cost = _objective(m64, best, ci, tgt, psis)
        if starts > 0:
            z0 = _to_sphere(torch.randn([starts, d], generator=gen, dtype=torch.float64))
            zr = _refine(m64, z0, ci, tgt.expand(starts, -1, -1), psis, steps)
            cr = _objective(m64, zr, ci, tgt.expand(starts, -1, -1), psis)
            k = int(cr.argmin())
            if float(cr[k]) < float(cost[0]):
                best, cost = zr[k:k + 1], cr[k:k + 1]
        for h in range(hops):
            kick = 0.3 * 0.85**h * torch.randn([1, d], generator=gen, dtype=torch.float64)
            zp = _refine(m64, _to_sphere(best + kick), ci, tgt, psis, max(steps // 2, 1))
            cp = _objective(m64, zp, ci, tgt, psis)
            if float(cp[0]) < float(cost[0]):
                best, cost = zp, cp
        out[i] = best[0]
    return out


def _relative(m64: Any, z: Tensor, c: Tensor | None, targets: Tensor, psis: Tensor) -> Tensor:
    """Relative residual of float32-rounded z: ``sqrt(objective / Σ‖target‖²)`` per item."""
    z32 = z.to(torch.float32).to(torch.float64)
    with torch.no_grad():
        return (_objective(m64, z32, c, targets, psis) / targets.square().sum(dim=(1, 2)).clamp_min(1e-30)).sqrt()


def mapping_residual(G: Any, z: Tensor, w: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
    """Relative residual ``‖mapping(z, c, ψ) − w‖ / ‖w‖`` per item (float64), z ``[N, z_dim]``,
    w ``[N, w_dim]`` or ``[N, num_ws, w_dim]``."""
    m64 = copy.deepcopy(G.mapping).cpu().to(torch.float64)
    w = torch.as_tensor(w).detach().cpu().to(torch.float64)
    targets = w[:, None] if w.ndim == 2 else w
    psis = torch.full([targets.shape[1]], float(truncation_psi), dtype=torch.float64)
    c64 = None if c is None or G.c_dim == 0 else torch.as_tensor(c).cpu().to(torch.float64)
    return _relative(m64, torch.as_tensor(z).cpu().to(torch.float64), c64, targets, psis)


def invert_mapping(G: Any, w: Tensor | np.ndarray, c: Tensor | np.ndarray | None = None,
                   truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                   refine_steps: int = 30, starts: int = 16, hops: int = 20, seed: int = 0,
                   tolerance: float = 1e-5) -> MappingInversion:
    """Find z with ``mapping(z, c, ψ) ≈ w``.

    Args:
        G: a generator whose ``mapping`` has ``fc0…fc{L-1}`` dense layers (StyleGAN2/3); not modified
            (a float64 CPU copy of the mapping is used).
        w: ``[w_dim]``, ``[N, w_dim]`` or a W+ latent ``[N, num_ws, w_dim]`` (float; any device).
        c: class labels ``[1 or N, c_dim]`` for conditional networks (required then), else ignored.
        truncation_psi: the ψ the latent was made with (undone first; must be > 0).
        truncation_cutoff: rows ≥ cutoff were not truncated (W+ input only).
        refine_steps: Levenberg–Marquardt iterations after the algebraic solution (0 = none).
        starts, hops, seed: when the refined residual of a latent is still above ``tolerance`` (a badly
            conditioned mapping, float32 w), LM is restarted from ``starts`` seeded random z and then
            ``hops`` rounds of basin hopping are run (:func:`_global_search`); the best z is kept.
        tolerance: relative residual below which no global search is run.

    Returns:
        :class:`MappingInversion`. For a W+ input, ``row_z`` holds one z per row, and ``z`` is the best
        single z for all rows together (chosen among the rows' solutions and that of the rows' mean, then
        refined against all rows), with its ``residual``.

    Raises:
        ValueError: bad shapes, ψ ≤ 0, a conditional network without ``c``, a network without z input,
            or a mapping activation that has no inverse.
    """
    mapping = G.mapping
    if not truncation_psi > 0:
        raise UsageError(f"truncation_psi must be > 0 to be undone, got {truncation_psi}")
    if G.z_dim == 0:
        raise UsageError("this network has no z input (z_dim = 0); there is nothing to invert")
    w = torch.as_tensor(np.asarray(w) if isinstance(w, np.ndarray) else w).detach().cpu().to(torch.float64)
    if w.ndim == 1:
        w = w[None]
    if w.ndim not in (2, 3) or w.shape[-1] != G.w_dim:
        raise ValueError(f"w must be [w_dim], [N, w_dim] or [N, num_ws, w_dim] with w_dim = {G.w_dim}, "
                         f"got {list(w.shape)}")
    plus = w.ndim == 3
    targets = w if plus else w[:, None]          # [N, R, w_dim]
    n, rows, _ = targets.shape
    c64 = None
    if G.c_dim > 0:
        if c is None:
            raise UsageError(f"this network is conditional: give its class label c [1 or N, {G.c_dim}]")
        c64 = torch.as_tensor(np.asarray(c) if isinstance(c, np.ndarray) else c).detach().cpu().to(torch.float64)
        if c64.ndim == 1:
            c64 = c64[None]
        if c64.shape[0] not in (1, n) or c64.shape[1] != G.c_dim:
            raise ValueError(f"c must be [1 or {n}, {G.c_dim}], got {list(c64.shape)}")
    m64 = copy.deepcopy(mapping).cpu().to(torch.float64)
    w_avg = m64.w_avg
    psi_rows = torch.tensor([truncation_psi if (truncation_cutoff is None or r < truncation_cutoff) else 1.0
                             for r in range(rows)], dtype=torch.float64)
    untrunc = w_avg + (targets - w_avg) / psi_rows[None, :, None]   # [N, R, w_dim]

    def c_for(per: int) -> Tensor | None:  # labels for items that are each repeated `per` times
        if c64 is None:
            return None
        return c64 if c64.shape[0] == 1 else c64.repeat_interleave(per, dim=0)

    notes: list[str] = []
    if plus and rows > 1 and bool((targets == targets[:, :1]).all()) and bool((psi_rows == psi_rows[0]).all()):
        # A W latent broadcast to every row: invert one row, the best single z is the same.
        single = invert_mapping(G, targets[:, 0], c, truncation_psi, None, refine_steps, starts, hops, seed,
                                tolerance)
        return MappingInversion(
            z=single.z, residual=single.residual, row_z=single.z[:, None].repeat(1, rows, 1),
            row_residual=single.residual[:, None].repeat(1, rows), algebraic_residual=single.algebraic_residual,
            least_squares_layers=single.least_squares_layers, notes=single.notes,
            truncation_psi=single.truncation_psi)
    # One z per row (W+), or per latent.
    flat = untrunc.reshape(n * rows, -1)
    c_rows = c_for(rows)
    z_rows, lsq, layer_notes = _algebraic(m64, flat, c_rows)
    notes += layer_notes
    row_targets = targets.reshape(n * rows, 1, -1)
    row_psi = psi_rows.repeat(n)  # the psi of each flattened row
    # Rows can carry different psi; handle by refining groups of equal psi (one group when no cutoff).
    z_rows_ref = z_rows.clone()
    row_res = torch.empty(n * rows, dtype=torch.float64)
    for psi in row_psi.unique():
        idx = torch.nonzero(row_psi == psi).flatten()
        cc = c_rows if c_rows is None or c_rows.shape[0] == 1 else c_rows[idx]
        p = psi.reshape(1)
        z_rows_ref[idx] = _refine(m64, z_rows[idx], cc, row_targets[idx], p, refine_steps)
        row_res[idx] = _relative(m64, z_rows_ref[idx], cc, row_targets[idx], p)

    # The best single z for all rows of each latent.
    c_items = c_for(1)
    if plus:
        z_mean, _, _ = _algebraic(m64, untrunc.mean(dim=1), c_items)
        cands = torch.cat([z_rows_ref.reshape(n, rows, -1), z_mean[:, None]], dim=1)   # [N, R+1, z_dim]
        k = cands.shape[1]
        cc = c_for(k)
        scores = _objective(m64, cands.reshape(n * k, -1), cc,
                            targets.repeat_interleave(k, dim=0), psi_rows).reshape(n, k)
        z0 = cands[torch.arange(n), scores.argmin(dim=1)]
    else:
        z0 = z_rows
    algebraic = _relative(m64, z0, c_items, targets, psi_rows)
    # W: the rows' refined solution is the answer; W+: refine the best candidate against all rows.
    z = _refine(m64, z0, c_items, targets, psi_rows, refine_steps) if plus else z_rows_ref
    residual = _relative(m64, z, c_items, targets, psi_rows)
    bad = torch.nonzero(residual > tolerance).flatten() if refine_steps > 0 and (starts > 0 or hops > 0) \
        else torch.zeros(0, dtype=torch.long)
    if bad.numel():
        before = float(residual[bad].max())
        cc = c_items if c_items is None or c_items.shape[0] == 1 else c_items[bad]
        z = z.clone()
        z[bad] = _global_search(m64, z[bad], cc, targets[bad], psi_rows, starts, hops, refine_steps, seed)
        residual = _relative(m64, z, c_items, targets, psi_rows)
        notes.append(f"{starts} random restarts and {hops} basin hops for {bad.numel()} latent(s) stuck at a "
                     f"local minimum: residual {before:.3g} → {float(residual[bad].max()):.3g}")
        if not plus:
            z_rows_ref = z
    if refine_steps > 0:
        notes.append(f"refined by Levenberg–Marquardt (≤ {refine_steps} iterations): residual {float(algebraic.max()):.3g} → "
                     f"{float(residual.max()):.3g}")
    return MappingInversion(
        z=z.to(torch.float32),
        residual=residual,
        row_z=z_rows_ref.reshape(n, rows, -1).to(torch.float32) if plus else None,
        row_residual=row_res.reshape(n, rows) if plus else None,
        algebraic_residual=algebraic,
        least_squares_layers=tuple(lsq),
        notes=tuple(dict.fromkeys(notes)),
        truncation_psi=float(truncation_psi),
    )
