"""Labels ``c`` of conditional networks, as their users drive them, and truncation towards a label's mean w.

``--class`` accepts (one parser, :func:`parse_labels`, used by every command through
``cli.common.class_vector``):

* ``K``: one-hot of class K;
* ``K1,K2,…``: the *sum* of the one-hots (several labels at once, as the StyleGAN1 WikiArt models are
  used: an artist, a genre and a style together); a repeated class counts twice;
* a suffix ``@S`` on either form, or ``--label-scale S``: the whole vector times S (a global label scale;
  both together multiply);
* ``FILE.npy``: a label vector ``[c_dim]`` or ``[1, c_dim]`` in any float dtype (read with
  ``allow_pickle=False``), also scaled by ``--label-scale``.

Truncation of a conditional network towards *its label's* mean w (the WikiArt notebooks' way;
the stored ``w_avg`` mixes every label): :func:`label_w_avg` is the mean of ``G.mapping(z, c)`` over
seeded z with the same c, and :func:`truncate_ws` moves rows ``< cutoff`` towards any centre.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipstyle.errors import UsageError

__all__ = [
    "CLASS_HELP",
    "LABEL_AVG_SAMPLES",
    "LABEL_AVG_SEED",
    "LabelError",
    "label_tensor",
    "label_w_avg",
    "parse_labels",
    "truncate_ws",
]

#: Samples and seed of :func:`label_w_avg` (z drawn on CPU from ``torch.Generator().manual_seed(seed)``).
LABEL_AVG_SAMPLES = 4096
LABEL_AVG_SEED = 0

CLASS_HELP = ("Label of a conditional network: K, several at once K1,K2,… (sum of one-hots), "
              "an optional @S to scale the vector, or a .npy label vector.")


class LabelError(UsageError):
    """A ``--class`` value that does not fit the network (one-line message; a usage error)."""


def _read_npy(path: Path, c_dim: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise LabelError(f"{path} is not a readable .npy label vector ({type(exc).__name__})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise LabelError(f"{path} is not a numeric .npy label vector")
    arr = arr.astype(np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (c_dim,):
        raise LabelError(f"{path}: a label vector must be [{c_dim}] or [1, {c_dim}] for this network, "
                         f"got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise LabelError(f"{path} contains NaN or infinite values")
    return arr


def parse_labels(spec: str | int | None, c_dim: int, label_scale: float = 1.0) -> np.ndarray | None:
    """``--class`` → float32 ``[c_dim]`` (None for an unconditional network without ``--class``).

    Raises:
        LabelError: ``--class`` on an unconditional network, none on a conditional one, a class out of
            ``0..c_dim-1``, a malformed list or scale, or a ``.npy`` of the wrong shape.
    """
    if c_dim == 0:
        if spec is not None and str(spec).strip() != "":
            raise LabelError("--class was given but this network is unconditional")
        return None
    if spec is None or str(spec).strip() == "":
        raise LabelError(f"this network is conditional: pass --class K (0-{c_dim - 1}), K1,K2,… or a .npy label vector")
    text = str(spec).strip()
    scale = float(label_scale)
    if text.lower().endswith(".npy"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise LabelError(f"no such label file: {path}")
        c = _read_npy(path, c_dim)
    else:
        body, _, suffix = text.partition("@")
        if suffix:
            try:
                scale *= float(suffix)
            except ValueError:
                raise LabelError(f"bad label scale {suffix!r} in --class {text!r}: use e.g. 12,130@2") from None
        c = np.zeros([c_dim], np.float32)
        for item in body.split(","):
            try:
                k = int(item.strip())
            except ValueError:
                raise LabelError(f"bad class {item.strip()!r} in --class {text!r}: use K, K1,K2,… or a .npy file") from None
            if not 0 <= k < c_dim:
                raise LabelError(f"--class must be in 0-{c_dim - 1}, got {k}")
            c[k] += 1
    if not np.isfinite(scale):
        raise LabelError(f"the label scale must be finite, got {scale}")
    return (c * np.float32(scale)).astype(np.float32)


def label_tensor(c_dim: int, spec: str | int | None, n: int, device: Any, label_scale: float = 1.0) -> torch.Tensor:
    """Labels ``[n, c_dim]`` float32 on ``device`` (``[n, 0]`` for unconditional networks); see :func:`parse_labels`."""
    c = parse_labels(spec, c_dim, label_scale)
    if c is None:
        return torch.zeros([n, 0], device=device)
    return torch.from_numpy(c)[None].repeat(n, 1).to(device)


@torch.no_grad()
def label_w_avg(G: Any, c: torch.Tensor, samples: int = LABEL_AVG_SAMPLES, seed: int = LABEL_AVG_SEED) -> torch.Tensor:
    """Mean w of one label: mean of ``G.mapping(z, c)[:, 0]`` over ``samples`` seeded z → float32 ``[w_dim]``.

    Args:
        G: a conditional generator. c: ``[1, c_dim]`` or ``[c_dim]``.
    Raises:
        ValueError: c does not have ``c_dim`` entries.
    """
    c = torch.as_tensor(c, dtype=torch.float32).reshape(1, -1)
    if c.shape[1] != G.c_dim:
        raise ValueError(f"c must have {G.c_dim} entries, got {c.shape[1]}")
    gen = torch.Generator().manual_seed(seed)
    device = G.w_avg.device
    total = torch.zeros([G.w_dim], dtype=torch.float64)
    done = 0
    while done < samples:
        k = min(1024, samples - done)
        z = torch.randn([k, G.z_dim], generator=gen).to(device)
        total += G.mapping(z, c.to(device).expand(k, -1))[:, 0].to("cpu", torch.float64).sum(dim=0)
        done += k
    return (total / max(samples, 1)).to(torch.float32).to(device)


def truncate_ws(ws: torch.Tensor, center: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """``center + psi·(ws − center)`` on rows ``< cutoff`` (all rows for None); the other rows unchanged.

    Args: ws ``[N, num_ws, w_dim]``; center ``[w_dim]`` (or ``[N, w_dim]``). Returns a new tensor.
    """
    if ws.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got {list(ws.shape)}")
    if psi == 1:
        return ws.clone()
    center = center.to(ws).reshape(-1, 1, ws.shape[2])
    cut = ws.shape[1] if cutoff is None else max(0, int(cutoff))
    out = ws.clone()
    out[:, :cut] = torch.lerp(center.expand(ws.shape[0], 1, -1), ws[:, :cut], psi)
    return out
