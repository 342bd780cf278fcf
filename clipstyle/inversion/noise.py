"""Per-layer noise maps of StyleGAN2 during projection and editing.

StyleGAN2's synthesis layers add ``noise_const [res, res] · noise_strength`` (``noise_mode='const'``).
Projection optimizes these maps together with w (Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN", §5 and Appendix D), which needs:

* copies of the maps that are optimized instead of the generator's own buffers (the loaded generator is
  never modified: synthesis runs through :func:`torch.func.functional_call` with the copies substituted);
* the multi-scale autocorrelation penalty (:func:`noise_regularization`) and the renormalisation to zero
  mean / unit variance after every step (:func:`normalize_noise_`).

StyleGAN3 has no noise inputs: :func:`noise_buffers` returns ``{}`` and everything here is a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NOISE_KEY", "SynthesisWithNoise", "noise_buffers", "noise_regularization", "normalize_noise_",
           "noise_arrays", "read_noise"]

#: Prefix of the noise arrays in a latent ``.npz``: ``noise_0``, ``noise_1`` … (names in ``meta["noise"]``).
NOISE_KEY = "noise_"


def noise_buffers(G: Any) -> dict[str, Tensor]:
    """The generator's constant noise maps, ``{name relative to G.synthesis: [res, res] tensor}``, in layer
    order (empty for StyleGAN3 and for networks built without noise). The tensors are G's own buffers:
    clone before changing them."""
    synthesis = getattr(G, "synthesis", None)
    if synthesis is None:
        return {}
    return {name: buf for name, buf in synthesis.named_buffers() if name.endswith("noise_const")}


def noise_regularization(maps: Iterable[Tensor], min_size: int = 8) -> Tensor:
    """Multi-scale noise autocorrelation penalty (StyleGAN2 paper, Appendix D).

    For each map n_i and each level j of its pyramid (n_{i,0} = n_i; n_{i,j+1} = 2×2 average pool of
    n_{i,j} times 2, which keeps unit variance; down to ``min_size``²):
    ``L_{i,j} = (mean_{x,y} n(x,y)·n(x−1,y))² + (mean_{x,y} n(x,y)·n(x,y−1))²`` with the map wrapping at
    its edges. Returns ``Σ_{i,j} L_{i,j}`` (a scalar; 0 for no maps).

    Args:
        maps: tensors ``[H, W]`` or ``[N, 1, H, W]``.
    """
    total: Tensor | None = None
    for n in maps:
        x = n.reshape(-1, 1, *n.shape[-2:])
        while True:
            term = (x * x.roll(1, dims=3)).mean().square() + (x * x.roll(1, dims=2)).mean().square()
            total = term if total is None else total + term
            if min(x.shape[-2:]) <= min_size:
                break
            x = F.avg_pool2d(x, 2) * 2
    return total if total is not None else torch.zeros([])


@torch.no_grad()
def normalize_noise_(maps: Iterable[Tensor]) -> None:
    """In place: each map ← (map − mean) / std (population std over all its pixels)."""
    for n in maps:
        n.sub_(n.mean())
        n.mul_(n.square().mean().clamp_min(1e-16).rsqrt())


class SynthesisWithNoise:
    """Stand-in for a generator in :func:`clipstyle.optimize.loop.run`: ``G.synthesis`` with substituted noise
    maps and, optionally, a perturbation of ``ws`` before synthesis (projection's w-noise ramp).

    Args:
        G: the generator (never modified).
        noise: ``{name relative to G.synthesis: [res, res] tensor}``, e.g. optimizable copies of
            :func:`noise_buffers`; empty/None = the generator's own buffers.
        w_noise: called with ``ws [N, num_ws, w_dim]``; returns a tensor added to ``ws`` (or None).

    ``synthesis(ws, noise_mode)`` returns ``[N, C, H, W]`` like ``G.synthesis``; ``requires_grad_`` is
    forwarded to ``G`` only (the substituted maps keep their own ``requires_grad``).
    """

    def __init__(self, G: Any, noise: Mapping[str, Tensor] | None = None,
                 w_noise: Callable[[Tensor], Tensor | None] | None = None) -> None:
        self.G = G
        self.noise = dict(noise or {})
        unknown = set(self.noise) - set(noise_buffers(G))
        if unknown:
            raise ValueError(f"the generator has no noise buffer(s) {', '.join(sorted(unknown))}")
        self.w_noise = w_noise

    def requires_grad_(self, flag: bool = True) -> "SynthesisWithNoise":
        self.G.requires_grad_(flag)
        return self

    def __getattr__(self, name: str) -> Any:  # num_ws, img_resolution, … of the real generator
        G = self.__dict__.get("G")
        if G is None:
            raise AttributeError(name)
        return getattr(G, name)

    def synthesis(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        if self.w_noise is not None:
            delta = self.w_noise(ws)
            if delta is not None:
                ws = ws + delta
        if self.noise and noise_mode == "const":
            return torch.func.functional_call(self.G.synthesis, self.noise, (ws,), {"noise_mode": noise_mode},
                                              strict=False)
        return self.G.synthesis(ws, noise_mode=noise_mode)


def noise_arrays(noise: Mapping[str, Tensor]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``({"noise_0": float32 array, …}, [names in the same order])`` for a latent ``.npz``."""
    arrays = {f"{NOISE_KEY}{i}": t.detach().cpu().numpy().astype(np.float32) for i, t in enumerate(noise.values())}
    return arrays, list(noise)


def read_noise(path: str | Path, G: Any, names: list[str] | None = None) -> dict[str, Tensor]:
    """The noise maps stored in a latent ``.npz`` (``noise_0``… with names in ``meta["noise"]``), as float32
    tensors on G's device, matched to G's noise buffers. Returns ``{}`` when the file has none, or when
    they do not fit this generator (different names or shapes: another network)."""
    own = noise_buffers(G)
    if not own:
        return {}
    from clipstyle.latents.latent import read_array_file

    _, data = read_array_file(path)  # .npy / torch latents carry no noise maps
    data = data if isinstance(data, dict) else {}
    arrays = {k: v for k, v in data.items() if k.startswith(NOISE_KEY) and k[len(NOISE_KEY):].isdigit()}
    if not arrays:
        return {}
    ordered = [arrays[f"{NOISE_KEY}{i}"] for i in range(len(arrays)) if f"{NOISE_KEY}{i}" in arrays]
    names = names if names else list(own)
    if len(ordered) != len(names):
        return {}
    out = {}
    for name, arr in zip(names, ordered):
        if name not in own or tuple(arr.shape) != tuple(own[name].shape):
            return {}
        if arr.dtype.kind != "f" or not np.isfinite(arr).all():
            from clipstyle.latents.latent import LatentFileError

            raise LatentFileError(f"{path}: the noise map for {str(name)[:60]} holds NaN or infinite values "
                                  f"(pass --no-file-noise to render without the file's noise)")
        out[name] = torch.from_numpy(arr).to(own[name].device, torch.float32)
    return out
