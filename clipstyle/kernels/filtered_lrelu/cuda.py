"""CUDA version of :func:`clipstyle.kernels.filtered_lrelu.filtered_lrelu` (built lazily, never at import).

:func:`load` compiles ``filtered_lrelu.cpp`` + ``filtered_lrelu.cu`` (which use the gather kernel of
``upfirdn2d/upfirdn2d.h``) with ninja on first use. Forward: one pass upsamples ``x + b`` and applies
``clamp(lrelu(·)·gain)``, writing a 1-byte mask per upsampled sample; a second pass downsamples.
Backward: the adjoint of the down pass, then the adjoint of the up pass reading the gradient through
the mask (see ``filtered_lrelu.h``). Only the mask is kept for backward. ``ref.py`` (written with the
StyleGAN3 generator) is the source of truth it is tested against. First derivatives only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .._build import build
from ..upfirdn2d.cuda import filter_2d

__all__ = ["load", "load_cpu", "filtered_lrelu_cuda", "SOURCES"]

_HERE = Path(__file__).resolve().parent
SOURCES = [_HERE / "filtered_lrelu.cpp", _HERE / "filtered_lrelu.cu"]


def load():
    """Build (once) and import the CUDA extension. Raises :class:`~clipstyle.kernels._build.KernelBuildError`."""
    return build("clipstyle_filtered_lrelu", SOURCES, with_cuda=True)


def load_cpu():
    """The same C++ without CUDA: CPU loops over the shared gather (for tests)."""
    return build("clipstyle_filtered_lrelu_cpu", SOURCES[:1], with_cuda=False)


class _FilteredLReLUCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, x, b, fu2, fd2, up, down, pad, gain, slope, clamp, flip, has_down):  # noqa: D401
        empty = x.new_empty([0])
        y, mask = ext.forward(x, fu2, fd2, b if b is not None else empty, up, down, *pad, flip, slope, gain, clamp,
                              has_down)
        ctx.save_for_backward(mask)
        ctx.cfg = (ext, fu2, fd2, tuple(x.shape[2:]), up, down, pad, flip, slope, gain, has_down, b is not None)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        ext, fu2, fd2, (h, w), up, down, pad, flip, slope, gain, has_down, has_bias = ctx.cfg
        gx = ext.backward(grad, mask, fu2, fd2, h, w, up, down, *pad, flip, slope, gain, has_down)
        gb = gx.sum(dim=[0, 2, 3]) if has_bias and ctx.needs_input_grad[2] else None
        return (None, gx if ctx.needs_input_grad[1] else None, gb) + (None,) * 10


def filtered_lrelu_cuda(
    ext,
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
    flip_filter: bool,
) -> torch.Tensor:
    """Filtered leaky ReLU with the extension ``ext`` (from :func:`load`); same signature and
    semantics as :func:`clipstyle.kernels.filtered_lrelu.ref.filtered_lrelu_ref`.

    Args:
        x: ``[N, C, H, W]`` float16/bfloat16/float32/float64 on the extension's device.
        fu, fd: 1-D (separable), 2-D or ``None`` filters (float32 in the kernel; never differentiated).
        b: ``[C]`` or ``None``. up, down: integers >= 1. padding: ``(x0, x1, y0, y1)`` of the upsampled image.
        gain, slope: floats. clamp: ``None`` or ``>= 0``. flip_filter: correlation instead of convolution.

    Returns:
        ``[N, C, H_out, W_out]`` in ``x``'s dtype and suggested memory format; differentiable once
        w.r.t. ``x`` and ``b``.

    Raises:
        RuntimeError (from the extension): an upsampled image smaller than the down-filter, bad dtypes.
    """
    fu2 = filter_2d(fu, x.device)
    fd2 = filter_2d(fd, x.device)
    has_down = not (down == 1 and fd is None)
    clamp_v = -1.0 if clamp is None or clamp < 0 else float(clamp)
    if b is not None:
        b = b.to(x.dtype)
    return _FilteredLReLUCuda.apply(ext, x, b, fu2, fd2, int(up), int(down), tuple(int(p) for p in padding),
                                    float(gain), float(slope), clamp_v, bool(flip_filter), has_down)
