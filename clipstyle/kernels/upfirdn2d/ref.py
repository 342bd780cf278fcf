"""Pure-PyTorch reference of upfirdn2d: upsample (zero insertion), pad, FIR filter, downsample."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _apply_filter(x: torch.Tensor, f: torch.Tensor, flip: bool) -> torch.Tensor:
    """True convolution (``flip=False``) or correlation (``flip=True``) of every channel with ``f``.

    ``x``: [N, C, H, W], already padded. ``f``: 1-D (applied along W then H) or 2-D, already scaled.
    """
    c = x.shape[1]
    f = f.to(x.dtype)
    if not flip:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        weight = f[None, None].expand(c, 1, *f.shape)
        return F.conv2d(x, weight, groups=c)
    weight = f[None, None, None, :].expand(c, 1, 1, f.shape[0])
    x = F.conv2d(x, weight, groups=c)
    return F.conv2d(x, weight.transpose(2, 3), groups=c)


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Reference upfirdn2d; arguments already normalised (``up``/``down`` as (x, y),
    ``padding`` as (x0, x1, y0, y1)). See :func:`clipstyle.kernels.upfirdn2d.upfirdn2d`.
    """
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    if upx > 1 or upy > 1:  # zero insertion: each sample followed by up-1 zeros
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if f is not None:
        f = f * (gain ** (f.ndim / 2))
        x = _apply_filter(x, f, flip_filter)
    elif gain != 1:
        x = x * gain
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x
