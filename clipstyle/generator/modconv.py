"""The modulated convolution on the activation side, with lean backward passes (StyleGAN2 and StyleGAN3).

StyleGAN2's modulation/demodulation (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", §2.2, eqs. 1–3) scales the weight per sample, ``w'_{n,o,i,k} = w_{o,i,k} s_{n,i} d_{n,o}``.
Because ``s`` scales input channels and ``d`` output channels, the same result is

    ``y = (x · s) ⊛ w · d``,  ``d_{n,o} = (Σ_i s_{n,i}² Σ_k w_{o,i,k}² + ε)^{-1/2}``

with the one shared weight ``w``. That is what this module computes. It matters for speed: with
per-sample weights the backward pass of a latent optimization must compute the gradient of those
weights — a second convolution as large as the forward one — to reach ``s``; here ``s``'s gradient is
``Σ_{h,w} ∂L/∂(x·s) · x``, a reduction, and a frozen ``w`` gets no gradient at all. One step of a
frozen generator then costs two convolutions per layer instead of three.

* :func:`styled_conv2d` — ``(x · s) ⊛ w`` (plain or transposed/strided), saving ``x`` (not ``x · s``);
* :func:`scale_channels` — ``z · d`` in place, saving only its output;
* :func:`sum_hw_of_product` — the reductions (one einsum for dense NCHW, else float32 slabs of rows).

Both functions run under ``torch.autocast`` (the convolution in the autocast dtype, the style and
demodulation gradients reduced in float32). They are differentiable once (``once_differentiable``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["scale_channels", "styled_conv2d", "sum_hw_of_product"]


def sum_hw_of_product(a: torch.Tensor, b: torch.Tensor, elements: int = 1 << 22) -> torch.Tensor:
    """``(a · b).sum([2, 3])`` for ``[N, C, H, W]`` tensors, in slabs of rows (no full-size temporary),
    accumulated in float32 at least (float64 for float64 inputs). Returns ``[N, C]`` of that dtype."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    if a.dtype == b.dtype == dtype and a.is_contiguous() and b.is_contiguous():
        return torch.einsum("nchw,nchw->nc", a, b)  # NCHW: one fused reduction, 4× faster than the slabs
    rows = max(1, elements // max(1, a.shape[0] * a.shape[1] * a.shape[3]))
    out = torch.zeros(a.shape[:2], dtype=dtype, device=a.device)
    for h in range(0, a.shape[2], rows):
        out += (a[:, :, h:h + rows].to(dtype) * b[:, :, h:h + rows].to(dtype)).sum(dim=[2, 3])
    return out


class _StyledConv(torch.autograd.Function):
    """``z = (x · s[:, :, None, None]) ⊛ w``; saves ``x``, ``s``, ``w`` (``x · s`` is recomputed only
    when ``w`` needs a gradient)."""

    @staticmethod
    def forward(ctx, x, s, weight, transposed, stride, padding):
        if x.shape[0] == 1:  # one sample: scale the (smaller) weight's input channels instead of x
            ws = weight * (s.reshape(-1, 1, 1, 1) if transposed else s.reshape(1, -1, 1, 1)).to(weight.dtype)
            xs = x
        else:
            ws, xs = weight, x * s[:, :, None, None].to(x.dtype)
        if transposed:
            z = F.conv_transpose2d(xs, ws, stride=stride, padding=padding)
        else:
            z = F.conv2d(xs, ws, stride=stride, padding=padding)
        ctx.save_for_backward(x, s, weight)
        ctx.conv = (transposed, stride, padding)
        ctx.dtype = z.dtype  # the autocast dtype when autocast ran the convolution
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, s, weight = ctx.saved_tensors
        transposed, stride, padding = ctx.conv
        dt = ctx.dtype
        need_w = ctx.needs_input_grad[2]
        xs = (x * s[:, :, None, None].to(x.dtype)).to(dt) if need_w else x.to(dt)  # else: read for its shape
        g_xs, g_w, _ = torch.ops.aten.convolution_backward(
            g.to(dt), xs, weight.to(dt), None, [stride] * 2, list(padding), [1, 1], transposed, [0, 0], 1,
            [True, need_w, False])
        g_s = sum_hw_of_product(g_xs, x).to(s.dtype) if ctx.needs_input_grad[1] else None
        g_x = g_xs.mul_(s[:, :, None, None].to(g_xs.dtype)) if ctx.needs_input_grad[0] else None
        return g_x, g_s, g_w, None, None, None


def styled_conv2d(x: torch.Tensor, styles: torch.Tensor, weight: torch.Tensor, *, padding: int | tuple[int, int] = 0,
                  stride: int = 1, transposed: bool = False) -> torch.Tensor:
    """``(x · s) ⊛ w``: the modulated convolution before demodulation, activation side.

    Args:
        x: ``[N, I, H, W]`` float.
        styles: ``[N, I]`` per-sample input-channel scales (StyleGAN's ``s``).
        weight: ``[O, I, k, k]`` (``conv2d``) or ``[I, O, k, k]`` (``transposed``: ``conv_transpose2d``).
        padding: as in ``conv2d`` / ``conv_transpose2d`` (int or ``(py, px)``). stride: as there.

    Returns:
        ``[N, O, H', W']`` in ``x``'s dtype (the autocast dtype under autocast).
    """
    if x.ndim != 4 or styles.shape != x.shape[:2]:
        raise ValueError(f"styled_conv2d: x [N, I, H, W] and styles [N, I], got {list(x.shape)} and "
                         f"{list(styles.shape)}")
    pad = (padding, padding) if isinstance(padding, int) else tuple(padding)
    return _StyledConv.apply(x, styles, weight, bool(transposed), int(stride), pad)


class _ScaleChannels(torch.autograd.Function):
    """``y = z · d[:, :, None, None] (+ noise)`` in place; saves ``y``, ``d`` (and ``noise``):
    ``∂L/∂d = Σ_{h,w} g · (y − noise) / d``."""

    @staticmethod
    def forward(ctx, z, d, noise):
        ctx.mark_dirty(z)
        y = z.mul_(d[:, :, None, None].to(z.dtype))
        if noise is not None:
            y.add_(noise.to(y.dtype))
        ctx.save_for_backward(y, d, noise)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        y, d, noise = ctx.saved_tensors
        g_d = g_noise = None
        if ctx.needs_input_grad[1]:
            gy = sum_hw_of_product(g, y)
            if noise is not None:
                gy = gy - sum_hw_of_product(g, noise.to(g.dtype).expand_as(g))
            g_d = (gy / d).to(d.dtype)
        if noise is not None and ctx.needs_input_grad[2]:
            g_noise = g.sum_to_size(noise.shape).to(noise.dtype)
        g_z = g * d[:, :, None, None].to(g.dtype) if ctx.needs_input_grad[0] else None
        return g_z, g_d, g_noise


def scale_channels(z: torch.Tensor, d: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``z · d + noise`` per (sample, channel) — demodulation, then StyleGAN2's noise input — in place
    on ``z`` (which must not be needed by another backward; :func:`styled_conv2d`'s output is not).
    ``d`` must be non-zero (StyleGAN's ``rsqrt(· + ε)`` is). Args: z ``[N, C, H, W]``, d ``[N, C]``,
    noise broadcastable to z (e.g. ``[H, W]``) or ``None``. Returns ``z``."""
    if d.shape != z.shape[:2]:
        raise ValueError(f"scale_channels: d must be {list(z.shape[:2])}, got {list(d.shape)}")
    return _ScaleChannels.apply(z, d, noise)
