"""CUDA version of :func:`clipstyle.kernels.upfirdn2d.upfirdn2d` (built lazily, never at import).

:func:`load` compiles ``upfirdn2d.cpp`` + ``upfirdn2d.cu`` with ninja on first use (see
:mod:`clipstyle.kernels._build`). The kernel is a gather (``upfirdn2d.h``): each output sample sums
only the filter taps that land on real input samples, so inserted zeros and discarded samples
cost nothing; a separable (1-D) filter runs as an x pass then a y pass. ``ref.py`` is the source of
truth it is tested against.

Backward (w.r.t. ``x`` only; filters are constants): the adjoint of upfirdn2d is again an
upfirdn2d (:func:`~clipstyle.kernels.upfirdn2d.ref.adjoint_params`) — per axis, with input length
``L``, output length ``O`` and ``T`` taps::

    up' = down, down' = up, flip' = not flip, gain' = gain,
    pad0' = T - 1 - pad0, pad1' = L·up - O·down + pad0 - up + 1

(zero-insert the gradient by ``down``, correlate with the reversed filter, keep every ``up``-th
sample; the paddings make the result exactly ``L`` long). First derivatives only.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import torch

from .._build import build
from .ref import adjoint_params

__all__ = ["load", "load_cpu", "upfirdn2d_cuda", "filter_2d", "taps_hw", "SOURCES"]

_HERE = Path(__file__).resolve().parent
SOURCES = [_HERE / "upfirdn2d.cpp", _HERE / "upfirdn2d.cu"]


def load():
    """Build (once) and import the CUDA extension. Raises :class:`~clipstyle.kernels._build.KernelBuildError`."""
    return build("clipstyle_upfirdn2d", SOURCES, with_cuda=True)


def load_cpu():
    """The same C++ without CUDA: CPU loops over ``upfirdn2d.h``'s gather (for tests)."""
    return build("clipstyle_upfirdn2d_cpu", SOURCES[:1], with_cuda=False)


_FILTERS: dict[tuple, tuple[weakref.ref | None, torch.Tensor]] = {}


def filter_2d(f: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """The kernel's filter: float32, contiguous, on ``device``.

    ``None`` → ``[[1]]``; a 1-D (separable) filter stays 1-D (the extension runs it as an x pass and a
    y pass); 2-D as is. Cached per filter tensor while it lives and is not modified in place (no
    per-call rebuilding).
    """
    if f is None:
        key = ("one", device)
        hit = _FILTERS.get(key)
        if hit is None:
            hit = (None, torch.ones([1, 1], dtype=torch.float32, device=device))
            _FILTERS[key] = hit
        return hit[1]
    key = (id(f), f._version, device)
    hit = _FILTERS.get(key)
    if hit is not None and hit[0] is not None and hit[0]() is f:
        return hit[1]
    g = f.detach().to(device=device, dtype=torch.float32).contiguous()
    if len(_FILTERS) > 512:
        _FILTERS.clear()
    _FILTERS[key] = (weakref.ref(f, lambda _r, k=key: _FILTERS.pop(k, None)), g)
    return g


def taps_hw(f2: torch.Tensor) -> tuple[int, int]:
    """(taps along y, taps along x) of a kernel filter from :func:`filter_2d`."""
    return (f2.shape[0], f2.shape[0]) if f2.ndim == 1 else (f2.shape[0], f2.shape[1])


class _Upfirdn2dCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, x, f2, up, down, pad, flip, gain):  # noqa: D401
        y = ext.upfirdn2d(x, f2, up[0], up[1], down[0], down[1], *pad, flip, gain)
        ctx.ext, ctx.f2, ctx.flip, ctx.gain = ext, f2, flip, gain
        ctx.adj = adjoint_params(tuple(x.shape[2:]), tuple(y.shape[2:]), taps_hw(f2), up, down, pad)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None, None, None, None, None
        up, down, pad = ctx.adj
        gx = ctx.ext.upfirdn2d(grad, ctx.f2, up[0], up[1], down[0], down[1], *pad, not ctx.flip, ctx.gain)
        return None, gx, None, None, None, None, None, None


def upfirdn2d_cuda(
    ext,
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """upfirdn2d with the extension ``ext`` (from :func:`load`).

    Args:
        x: ``[N, C, H, W]`` float16/bfloat16/float32/float64 on the extension's device, any strides.
        f: 1-D ``[T]`` (separable), 2-D ``[Ty, Tx]`` or ``None``; used as float32, never differentiated.
        up, down: ``(x, y)`` integer factors >= 1. padding: ``(x0, x1, y0, y1)``; negative crops.
        flip_filter: ``False`` = convolution, ``True`` = correlation. gain: overall scale.

    Returns:
        ``[N, C, H_out, W_out]`` in ``x``'s dtype and suggested memory format; differentiable once
        w.r.t. ``x``.

    Raises:
        RuntimeError (from the extension): a padded extent smaller than the filter, bad dtypes.
    """
    f2 = filter_2d(f, x.device)
    return _Upfirdn2dCuda.apply(ext, x, f2, tuple(up), tuple(down), tuple(padding), bool(flip_filter), float(gain))
