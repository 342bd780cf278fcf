"""Latent directions: apply one, learn one from labelled latents, or find one from a pair of texts.

* **Apply**: ``ws(s) = ws + s·d`` on the chosen rows, for strengths ``s`` (a direction ``d`` is
  ``[w_dim]`` — broadcast to every row — or ``[num_ws, w_dim]``).
* **Learn** (InterFaceGAN, Shen et al. 2020, "Interpreting the Latent Space of GANs for Semantic
  Face Editing", §2.2–3.1): a linear classifier separates latents with and without an attribute;
  the unit normal of its hyperplane is the editing direction (pointing to the positive side). We
  train logistic regression (or an L2 linear SVM with squared hinge loss) in torch with L-BFGS on a
  stratified train/held-out split, and report held-out accuracy.
* **From text** (:func:`clipstyle.pipelines.directions.text_direction`, on the one optimization loop
  with :class:`DirectionLatent`): a W+ direction ``d`` shared by several seeds is optimized so that the change it
  causes in each image points the way ``E_T(target) − E_T(source)`` does in CLIP space — the
  directional loss of StyleGAN-NADA (Gal et al. 2021, arXiv:2108.00946), here driving a latent
  offset rather than generator weights (cf. StyleCLIP's global directions, Patashnik et al. 2021).

Scale convention: every direction written by this module is scaled so that the root-mean-square
of the norms of its non-zero rows is 1 (a unit W direction broadcast to every row has exactly this
scale), so ``--strength`` means the same for learned and text directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from clipstyle.errors import UsageError
from clipstyle.io.files import check_input_path

__all__ = ["DirectionError", "load_direction", "normalize_direction", "apply_direction", "collect_latents",
           "LearnedDirection", "learn_direction", "text_delta", "text_embedding", "DirectionLatent", "TextDirection"]


class DirectionError(UsageError):
    """A direction file or a training set that cannot be used (one-line message)."""


#: Keys read as the direction in an ``.npz`` or a torch dict, in this order.
DIRECTION_KEYS = ("direction", "boundary", "d", "dir", "ws", "w", "latent")
#: GANSpace PCA files: (components, standard deviations) key pairs; e4e's ``ffhq_pca.pt`` and GANSpace's cache.
GANSPACE_KEYS = (("comp", "std"), ("lat_comp", "lat_stdev"))


def _ganspace(obj: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(obj, dict):
        return None
    for ck, sk in GANSPACE_KEYS:
        if ck in obj and sk in obj and isinstance(obj[ck], np.ndarray) and isinstance(obj[sk], np.ndarray):
            return obj[ck], obj[sk]
    return None


def load_direction(path: str | Path, num_ws: int, w_dim: int, component: int | None = None,
                   sigma: float | None = None) -> torch.Tensor:
    """Read a direction file of any layout in circulation → float32 ``[num_ws, w_dim]``.

    Layouts (recognised by content, no code runs): ``.npy`` (InterFaceGAN boundaries, ours; any float
    dtype); ``.npz`` or torch dict with one of :data:`DIRECTION_KEYS` or a single array; torch ``.pt``
    tensors, also saved on a GPU (e4e's ``interfacegan_directions/*.pt``); GANSpace PCA dicts
    (``comp``/``std``[/``mean``], or ``lat_comp``/``lat_stdev``): component ``K`` times its standard
    deviation times ``sigma`` (default 1), so strengths count standard deviations along the component; the
    offset is relative, so the mean is not needed. Shapes: ``[w_dim]`` / ``[1, w_dim]`` (copied to every
    row), ``[num_ws, w_dim]``, ``[1, num_ws, w_dim]``.

    Raises:
        FileNotFoundError: no such file.
        DirectionError: not a direction (the message says what the file is and holds), a GANSpace file
            without ``component`` (or ``component`` for a file that is not one), a component out of range,
            a shape that does not fit (both shapes in one line), non-finite values.
    """
    from clipstyle.latents.latent import LatentFileError, describe_content, read_array_file

    path = check_input_path(path, "direction file")  # missing, a folder, a FIFO, a device: one line
    try:
        kind, obj = read_array_file(path, "direction")
    except LatentFileError as exc:
        raise DirectionError(str(exc)) from None
    if isinstance(obj, dict) and "s_direction" in obj:
        raise DirectionError(f"{path} is a StyleSpace direction (from 'direction global'): 'direction apply' reads "
                             "it; it is no W direction")
    pca = _ganspace(obj)
    if pca is not None:
        comp, std = pca
        comp = comp.reshape(comp.shape[0], -1) if comp.ndim >= 2 else comp
        std = std.reshape(-1)
        if component is None:
            raise DirectionError(f"{path} is a GANSpace PCA file with {comp.shape[0]} components: "
                                 f"pass --component K (0-{comp.shape[0] - 1}) [--sigma S]")
        if not 0 <= component < comp.shape[0] or component >= std.shape[0]:
            raise DirectionError(f"--component must be in 0-{min(comp.shape[0], std.shape[0]) - 1}, got {component}")
        arr = comp[component].astype(np.float64) * float(std[component]) * (1.0 if sigma is None else float(sigma))
    else:
        if component is not None or sigma is not None:
            raise DirectionError(f"--component/--sigma need a GANSpace PCA file (comp, std); {path} is {kind} "
                                 f"holding {describe_content(obj)}")
        arr = obj
        if isinstance(obj, dict):
            key = next((k for k in DIRECTION_KEYS if k in obj), None)
            arrays = [v for v in obj.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
            if key is not None:
                arr = obj[key]
            elif len(arrays) == 1:
                arr = arrays[0]
            else:
                raise DirectionError(f"{path} is {kind} holding {describe_content(obj)}; a direction is one array "
                                     f"(or one of the keys {', '.join(DIRECTION_KEYS)})")
        if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
            raise DirectionError(f"{path} is {kind} holding {describe_content(arr)}, not a floating-point direction")
    got = list(arr.shape)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 1 and arr.shape[0] == w_dim:
        arr = np.repeat(arr[None], num_ws, axis=0)
    if arr.shape != (num_ws, w_dim):
        raise DirectionError(f"{path}: the direction has shape {got} but this network needs [{w_dim}] or "
                             f"[{num_ws}, {w_dim}]")
    if not np.isfinite(arr).all():
        raise DirectionError(f"{path} contains NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(arr))


def normalize_direction(d: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Scale ``d`` ``[num_ws, w_dim]`` so the RMS norm of its non-zero rows is 1.

    Returns:
        ``(scaled d, the RMS before scaling)``.

    Raises:
        DirectionError: ``d`` is zero.
    """
    norms = d.norm(dim=-1)
    nz = norms > 0
    if not bool(nz.any()):
        raise DirectionError("the direction is zero")
    rms = float(norms[nz].square().mean().sqrt())
    return d / rms, rms


def apply_direction(ws: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float],
                    rows: Sequence[int] | None = None) -> torch.Tensor:
    """``ws + s·d`` for every strength ``s``, on ``rows`` only (default all).

    Args:
        ws: ``[1, num_ws, w_dim]`` (or ``[num_ws, w_dim]``) float32.
        direction: ``[num_ws, w_dim]`` or ``[w_dim]``.
        strengths: F floats.
        rows: styleblocks to move; the others stay bit-identical.

    Returns:
        float32 ``[F, num_ws, w_dim]``.

    Raises:
        ValueError: shapes do not fit.
    """
    if ws.ndim == 2:
        ws = ws[None]
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise ValueError(f"ws must be [1, num_ws, w_dim], got {list(ws.shape)}")
    d = direction.to(ws.device, torch.float32)
    if d.ndim == 1:
        d = d[None].expand(ws.shape[1], -1)
    if d.shape != ws.shape[1:]:
        raise ValueError(f"direction {list(d.shape)} does not fit ws {list(ws.shape[1:])}")
    mask = torch.zeros(ws.shape[1], dtype=torch.bool, device=ws.device)
    mask[list(range(ws.shape[1])) if rows is None else [int(r) for r in rows]] = True
    s = torch.tensor([float(v) for v in strengths], dtype=torch.float32, device=ws.device)
    moved = ws.to(torch.float32) + s[:, None, None] * d[None]
    return torch.where(mask[None, :, None], moved, ws.to(torch.float32).expand_as(moved))


def collect_latents(paths: Sequence[str | Path], num_ws: int | None = None, w_dim: int | None = None,
                    space: str = "w") -> tuple[torch.Tensor, list[str], tuple[int, int]]:
    """Read latent ``.npz`` files (or folders of them) into a feature matrix.

    Args:
        paths: files or folders (every ``*.npz`` inside, sorted, non-recursive).
        num_ws, w_dim: expected shape (checked when given).
        space: ``"w"`` — one ``[w_dim]`` vector per latent, the mean of its rows (the latent itself
            for W latents, whose rows are all equal); ``"w+"`` — the flattened ``[num_ws·w_dim]``.

    Returns:
        ``(X float32 [M, D], labels of the M latents, (num_ws, w_dim) of the files)``.

    Raises:
        FileNotFoundError: a path that does not exist. DirectionError: no latents found, shapes differ.
        LatentFileError: an unreadable file.
    """
    from clipstyle.latents import load_latents

    if space not in ("w", "w+"):
        raise DirectionError(f"--space must be w or w+, got {space!r}")
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.glob("*.npz")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    if not files:
        raise DirectionError(f"no .npz latent files in {', '.join(str(p) for p in paths)}")
    rows, labels = [], []
    shape = None
    for f in files:
        ws = load_latents(f, num_ws=num_ws, w_dim=w_dim).ws
        if shape is None:
            shape = ws.shape[1:]
        elif ws.shape[1:] != shape:
            raise DirectionError(f"{f} has latents of shape {list(ws.shape[1:])}, others {list(shape)}")
        feats = ws.mean(axis=1) if space == "w" else ws.reshape(ws.shape[0], -1)
        rows.append(feats)
        labels.extend(f.stem if ws.shape[0] == 1 else f"{f.stem}#{i}" for i in range(ws.shape[0]))
    return torch.from_numpy(np.concatenate(rows).astype(np.float32)), labels, (int(shape[0]), int(shape[1]))


@dataclass(frozen=True)
class LearnedDirection:
    """Result of :func:`learn_direction`.

    Attributes:
        direction: float32 ``[D]`` unit normal of the separating hyperplane, towards the positives.
        offset: the boundary's position along ``direction`` (``direction·x = offset`` on it).
        train_accuracy, test_accuracy: fractions in [0, 1] (``test`` on the held-out split).
        n_train, n_test: sample counts.
        method: ``logistic`` or ``svm``.
    """

    direction: torch.Tensor
    offset: float
    train_accuracy: float
    test_accuracy: float
    n_train: int
    n_test: int
    method: str
    history: tuple[float, ...] = field(default=())


def _split(n: int, holdout: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    k = min(n - 1, max(1, int(round(holdout * n))))
    return perm[k:], perm[:k]


def learn_direction(positive: torch.Tensor, negative: torch.Tensor, *, holdout: float = 0.2, seed: int = 0,
                    method: str = "logistic", l2: float = 1e-3, max_iter: int = 200) -> LearnedDirection:
    """Learn a unit direction separating ``positive`` from ``negative`` latents (InterFaceGAN).

    The features are centred on the training mean and divided by one global scale (this conditions
    the problem without changing the hyperplane's orientation). The classifier
    ``f(x) = v·x̃ + b`` minimises ``mean(loss(y·f(x))) + l2/2·‖v‖²`` over the training split with
    L-BFGS (strong Wolfe line search); ``loss`` is ``log(1 + e^{−m})`` (logistic) or
    ``max(0, 1 − m)²`` (linear SVM, squared hinge). The split is stratified: ``holdout`` of each class
    (at least one sample) is held out.

    Args:
        positive, negative: ``[P, D]`` and ``[Q, D]`` float feature matrices (P, Q >= 2).
        holdout: held-out fraction per class, in (0, 1).
        seed: seed of the split.
        method: ``logistic`` or ``svm``.
        l2: L2 regularisation strength (> = 0).
        max_iter: L-BFGS iterations.

    Returns:
        :class:`LearnedDirection`.

    Raises:
        DirectionError: fewer than two latents in a class, dimension mismatch, bad arguments.
    """
    if method not in ("logistic", "svm"):
        raise DirectionError(f"--method must be logistic or svm, got {method!r}")
    if not 0 < holdout < 1:
        raise DirectionError(f"--holdout must be between 0 and 1, got {holdout}")
    if positive.ndim != 2 or negative.ndim != 2 or positive.shape[1] != negative.shape[1]:
        raise DirectionError(f"positive and negative latents must be [N, D] with the same D, got "
                             f"{list(positive.shape)} and {list(negative.shape)}")
    if positive.shape[0] < 2 or negative.shape[0] < 2:
        raise DirectionError(f"need at least 2 positive and 2 negative latents (a train and a held-out one each), "
                             f"got {positive.shape[0]} and {negative.shape[0]}")
    gen = torch.Generator().manual_seed(seed)
    p_tr, p_te = _split(positive.shape[0], holdout, gen)
    n_tr, n_te = _split(negative.shape[0], holdout, gen)
    pos, neg = positive.to(torch.float64), negative.to(torch.float64)
    x_tr = torch.cat([pos[p_tr], neg[n_tr]])
    y_tr = torch.cat([torch.ones(len(p_tr)), -torch.ones(len(n_tr))]).to(torch.float64)
    x_te = torch.cat([pos[p_te], neg[n_te]])
    y_te = torch.cat([torch.ones(len(p_te)), -torch.ones(len(n_te))]).to(torch.float64)
    mu = x_tr.mean(0)
    scale = float((x_tr - mu).std()) or 1.0
    xt = (x_tr - mu) / scale
    v = torch.zeros(xt.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([v, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)
    history: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        margin = y_tr * (xt @ v + b)
        if method == "logistic":
            data = torch.nn.functional.softplus(-margin).mean()
        else:
            data = torch.clamp(1 - margin, min=0).square().mean()
        loss = data + 0.5 * l2 * v.square().sum()
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    opt.step(closure)
    v, b = v.detach(), b.detach()
    norm = float(v.norm())
    if not math.isfinite(norm) or norm == 0:
        raise DirectionError("the classifier found no direction (are the two sets identical?)")

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        score = ((x - mu) / scale) @ v + b
        return float(((score > 0).to(torch.float64) * 2 - 1 == y).to(torch.float64).mean())

    unit = v / norm
    # f(x) = 0  ⇔  v·(x − mu)/scale + b = 0  ⇔  unit·x = unit·mu − b·scale/‖v‖
    offset = float(unit @ mu - b * scale / norm)
    return LearnedDirection(unit.to(torch.float32), offset, accuracy(x_tr, y_tr), accuracy(x_te, y_te),
                            int(x_tr.shape[0]), int(x_te.shape[0]), method, tuple(history))


def text_embedding(guide: Any, text: str, templates: Sequence[str] | None = None) -> torch.Tensor:
    """Unit CLIP embedding of ``text`` → float32 ``[D]``; with ``templates`` (strings with one ``{}``) the
    normalized mean over the templates filled with the text (prompt ensembling, Radford et al. 2021, §3.1.4)."""
    if not templates:
        return guide.encode_text([text])[0]
    e = guide.encode_text([t.format(text) for t in templates]).mean(0)
    return e / e.norm()


def text_delta(guide: Any, source: str, target: str, templates: Sequence[str] | None = None) -> torch.Tensor:
    """Unit CLIP text direction ``E_T(target) − E_T(source)`` → float32 ``[D]``.

    With ``templates`` each embedding is :func:`text_embedding`'s template ensemble.

    Raises:
        DirectionError: the two texts give the same embedding.
    """
    delta = text_embedding(guide, target, templates) - text_embedding(guide, source, templates)
    if float(delta.norm()) < 1e-6:
        raise DirectionError(f"'{source}' and '{target}' give the same CLIP embedding: no direction")
    return delta / delta.norm()


class DirectionLatent(torch.nn.Module):
    """One W+ offset ``d`` shared by N starts, in the shape of a :class:`~clipstyle.latents.Latent` for the
    optimization loop: ``ws() = ws0 + d·mask`` ``[N, num_ws, w_dim]``, ``d`` ``[1, num_ws, w_dim]`` starting at 0,
    ``mask`` 1 on the rows the direction may use (the others stay bit-identical to ``ws0``).

    Raises:
        ValueError: ``start`` is not ``[N, num_ws, w_dim]`` or a row is out of range.
    """

    def __init__(self, start: torch.Tensor, rows: Sequence[int] | None = None) -> None:
        super().__init__()
        if start.ndim != 3:
            raise ValueError(f"start must be [N, num_ws, w_dim], got {list(start.shape)}")
        num_ws = start.shape[1]
        chosen = tuple(range(num_ws)) if rows is None else tuple(int(r) for r in rows)
        if any(not 0 <= r < num_ws for r in chosen):
            raise ValueError(f"direction rows {list(chosen)} are out of range 0-{num_ws - 1}")
        mask = torch.zeros(1, num_ws, 1, device=start.device)
        mask[:, list(chosen)] = 1
        self.rows = chosen
        self.register_buffer("start", start.detach().to(torch.float32).clone())  # [N, num_ws, w_dim]
        self.register_buffer("mask", mask)  # [1, num_ws, 1]
        self.param = torch.nn.Parameter(torch.zeros(1, num_ws, start.shape[2], device=start.device))

    def ws(self) -> torch.Tensor:
        """``ws0 + d·mask`` ``[N, num_ws, w_dim]``."""
        return self.start + self.param * self.mask

    def offset(self) -> torch.Tensor:
        """The masked direction ``d·mask`` ``[1, num_ws, w_dim]`` (with gradient)."""
        return self.param * self.mask

    def constrain_(self) -> None:
        """No constraint (the loop calls this after each step)."""


@dataclass(frozen=True)
class TextDirection:
    """Result of :func:`clipstyle.pipelines.directions.text_direction`.

    Attributes:
        direction: float32 ``[num_ws, w_dim]`` CPU, RMS row norm 1 over the optimized rows, zero elsewhere.
        strength: the RMS row norm the optimization reached (``ws + strength·direction`` reproduces it).
        history: loss per step.
        rows: the optimized styleblocks.
        interrupted: stopped early (Ctrl-C, ``stop()``); then the direction of the lowest loss so far (the
            latest one when the lowest was step 0's, at the zero offset; zero, with strength 0, when no
            update had moved it yet).
        precision: the mode the networks ran in (``fp32``/``tf32``/``bf16``/``fp16``).
    """

    direction: torch.Tensor
    strength: float
    history: tuple[float, ...]
    rows: tuple[int, ...]
    interrupted: bool = False
    precision: str = "fp32"
