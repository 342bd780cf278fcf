"""CUDA version of :func:`clipstyle.kernels.bias_act.bias_act` (built lazily, never at import).

:func:`load` compiles ``bias_act.cpp`` + ``bias_act.cu`` with ninja on first use (see
:mod:`clipstyle.kernels._build`); :func:`bias_act_cuda` is the autograd function the dispatcher calls.
The arithmetic is ``bias_act.h``'s; ``ref.py`` is the source of truth it is tested against.

Backward: for ``linear`` / ``relu`` / ``lrelu`` with ``gain > 0`` and ``alpha >= 0`` only the output
is saved and the local derivative is read from its sign (as the fast reference path does); for the
other activations ``x`` is saved and the derivative recomputed. First derivatives only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .._build import build
from .ref import activation

__all__ = ["load", "load_cpu", "bias_act_cuda", "SOURCES"]

_HERE = Path(__file__).resolve().parent
SOURCES = [_HERE / "bias_act.cpp", _HERE / "bias_act.cu"]


def load():
    """Build (once) and import the CUDA extension. Raises :class:`~clipstyle.kernels._build.KernelBuildError`."""
    return build("clipstyle_bias_act", SOURCES, with_cuda=True)


def load_cpu():
    """The same C++ without CUDA: CPU loops over ``bias_act.h``'s element math (for tests)."""
    return build("clipstyle_bias_act_cpu", SOURCES[:1], with_cuda=False)


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, x, b, dim, code, alpha, gain, clamp, from_y):  # noqa: D401
        empty = x.new_empty([0])
        y = ext.forward(x, b if b is not None else empty, dim, code, alpha, gain, clamp)
        ctx.save_for_backward(y if from_y else x, b if (b is not None and not from_y) else None)
        ctx.cfg = (ext, dim, code, alpha, gain, clamp, from_y, b is not None)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        r, b = ctx.saved_tensors
        ext, dim, code, alpha, gain, clamp, from_y, has_bias = ctx.cfg
        gx = ext.backward(grad, r, b if b is not None else r.new_empty([0]), dim, code, alpha, gain, clamp, from_y)
        gb = None
        if has_bias and ctx.needs_input_grad[2]:
            gb = gx.sum(dim=[d for d in range(gx.ndim) if d != dim])
        return None, gx if ctx.needs_input_grad[1] else None, gb, None, None, None, None, None, None


def bias_act_cuda(
    ext,
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """``clamp(act(x + b) · gain)`` with the extension ``ext`` (from :func:`load`).

    Args:
        x: any shape, float16/bfloat16/float32/float64, on the extension's device (CUDA; or CPU for
            the CPU-only test build). b: ``[x.shape[dim]]`` or ``None`` (cast to ``x``'s dtype).
        dim: bias dimension (negative counts from the end). act: a name of ``ref.ACTIVATIONS``.
        alpha, gain: resolved floats. clamp: ``None`` or ``>= 0``.

    Returns:
        ``y`` of ``x``'s shape, dtype and (dense) memory layout; differentiable once w.r.t. ``x`` and ``b``.
    """
    code = activation(act).code
    dim = dim % x.ndim if x.ndim else 0
    clamp_v = -1.0 if clamp is None or clamp < 0 else float(clamp)
    if act == "relu":
        alpha = 0.0
    from_y = act in ("linear", "relu", "lrelu") and gain > 0 and alpha >= 0
    if b is not None:
        b = b.to(x.dtype)
    return _BiasActCuda.apply(ext, x, b, dim, code, float(alpha), float(gain), clamp_v, from_y)
