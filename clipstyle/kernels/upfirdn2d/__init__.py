"""upfirdn2d: upsample by zero insertion, pad, convolve with a FIR filter, downsample.

The resampling primitive of StyleGAN2 (Karras et al. 2020, §B: bilinear [1,3,3,1] up/down-sampling,
following Zhang 2019, "Making convolutional networks shift-invariant again") and of StyleGAN3
(Karras et al. 2021, "Alias-Free Generative Adversarial Networks", §3.2: windowed-sinc filters).

For one axis, with input length ``L``, the output has length
``(L * up + pad0 + pad1 - taps + 1) // down`` (ceil division), where ``taps`` is the filter length.
"""

from __future__ import annotations

import numpy as np
import torch

from .._dispatch import choose, filters_in_float32
from .ref import upfirdn2d_ref

__all__ = ["upfirdn2d", "setup_filter", "upsample2d", "downsample2d", "filter2d", "filter_size"]


def _pair(v: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return int(v), int(v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return int(v[0]), int(v[1])


def parse_padding(padding: int | tuple | list) -> tuple[int, int, int, int]:
    """``p`` | ``(px, py)`` | ``(px0, px1, py0, py1)`` → ``(px0, px1, py0, py1)``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must be an int, a pair or a 4-tuple, got {padding!r}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; (1, 1) for ``None``."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[1], f.shape[0]


def setup_filter(
    f: list[float] | np.ndarray | torch.Tensor,
    normalize: bool = True,
    separable: bool | None = None,
    gain: float = 1.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Make a float32 FIR filter tensor from taps.

    Args:
        f: 1-D taps (e.g. ``[1, 3, 3, 1]``) or a 2-D kernel.
        normalize: scale so that the taps sum to 1 (per axis for separable filters).
        separable: keep a 1-D filter 1-D (applied along both axes). Default: only for >= 8 taps,
            small filters become their 2-D outer product, as StyleGAN2's stored buffers are.
        gain: overall gain (for a separable filter each axis gets ``sqrt(gain)``).

    Returns:
        float32 tensor, 1-D ``[taps]`` or 2-D ``[taps_y, taps_x]``.
    """
    f = torch.as_tensor(np.asarray(f, dtype=np.float32) if not torch.is_tensor(f) else f, dtype=torch.float32)
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"a filter must be 1-D or 2-D and non-empty, got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    f = f * (gain ** (f.ndim / 2))
    return f.to(device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int | tuple[int, int] = 1,
    down: int | tuple[int, int] = 1,
    padding: int | tuple = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Args:
        x: ``[N, C, H, W]`` float tensor.
        f: float32 filter, 1-D ``[taps]`` (separable) or 2-D ``[taps_y, taps_x]``; ``None`` = identity.
        up: integer upsampling factor, or ``(up_x, up_y)``; zeros are inserted after each sample.
        down: integer downsampling factor, or ``(down_x, down_y)``; keeps samples 0, down, 2·down…
        padding: ``p``, ``(px, py)`` or ``(px0, px1, py0, py1)`` applied after upsampling; negative crops.
        flip_filter: ``False`` = convolution (filter flipped), ``True`` = correlation.
        gain: overall signal gain (applied to the filter; ``up**2`` keeps the DC level when upsampling).
        impl: ``auto`` | ``ref`` | ``cuda``.

    Returns:
        ``[N, C, H_out, W_out]`` with the sizes in the module docstring.

    Raises:
        ValueError: bad shapes or factors.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be [N, C, H, W], got shape {list(x.shape)}")
    if f is not None and f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: filter must be 1-D or 2-D, got shape {list(f.shape)}")
    upxy = _pair(up, "up")
    downxy = _pair(down, "down")
    if min(upxy) < 1 or min(downxy) < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    pad = parse_padding(padding)
    ext = choose("upfirdn2d", impl, x, _cuda_loader if x.is_cuda else None)
    if ext is not None:
        from .cuda import upfirdn2d_cuda

        return upfirdn2d_cuda(ext, x, f, upxy, downxy, pad, flip_filter, gain)
    if filters_in_float32(x):  # CPU, 16-bit or autocast: the filters run in float32 (see the helper)
        with torch.autocast("cpu", enabled=False):
            return upfirdn2d_ref(x.float(), None if f is None else f.float(), upxy, downxy, pad, flip_filter,
                                 gain).to(x.dtype)
    return upfirdn2d_ref(x, f, upxy, downxy, pad, flip_filter, gain)


def _cuda_loader():
    from . import cuda  # built lazily on first use, never at import

    return cuda.load()


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: int | tuple = 0, flip_filter: bool = False,
             gain: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Filter without resampling; ``padding`` added to the 'same' padding. Shapes as :func:`upfirdn2d`."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = (px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2)
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 2, padding: int | tuple = 0,
               flip_filter: bool = False, gain: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Upsample by ``up`` with filter ``f`` (gain ``up**2`` keeps the level): ``[N,C,H,W] → [N,C,H·up,W·up]``."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = (px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=gain * up * up, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: int = 2, padding: int | tuple = 0,
                 flip_filter: bool = False, gain: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Filter then keep every ``down``-th sample: ``[N,C,H,W] → [N,C,H/down,W/down]``."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    pad = (px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
