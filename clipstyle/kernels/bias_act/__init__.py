"""Fused bias + activation + gain + clamp.

``bias_act(x, b)`` computes ``clamp(act(x + b[broadcast along dim]) * gain, -clamp, clamp)``; the
StyleGAN2 paper's layers (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
2020, Appendix B: equalized learning rate, leaky ReLU with slope 0.2 and gain sqrt(2)) are built
from it.
"""

from __future__ import annotations

import torch

from .._dispatch import choose
from .ref import ACTIVATIONS, activation, bias_act_ref

__all__ = ["bias_act", "ACTIVATIONS", "activation"]


def _cuda_loader():
    from . import cuda  # built lazily on first use, never at import

    return cuda.load()


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Add a bias, apply an activation, scale and clamp, in one op.

    Args:
        x: input of any shape, float32/float16/bfloat16.
        b: bias ``[x.shape[dim]]`` of the same dtype, or ``None``.
        dim: the dimension of ``x`` the bias runs along (channels: 1).
        act: ``linear``, ``relu``, ``lrelu``, ``tanh``, ``sigmoid``, ``elu``, ``selu``, ``softplus``, ``swish``.
        alpha: slope for ``lrelu`` (default 0.2); ignored by the others.
        gain: multiplier after the activation (default: the activation's, sqrt(2) for (l)relu).
        clamp: clamp the result to ``[-clamp, clamp]``; ``None`` (or negative) = no clamp.
        impl: ``auto`` | ``ref`` | ``cuda`` (see :mod:`clipstyle.kernels`).

    Returns:
        Tensor of the same shape and dtype as ``x``.

    Raises:
        ValueError: unknown activation, or a bias of the wrong shape.
    """
    spec = activation(act)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: bias must have shape [{x.shape[dim]}], got {list(b.shape)}")
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = None if clamp is None or clamp < 0 else float(clamp)
    ext = choose("bias_act", impl, x, _cuda_loader if x.is_cuda else None)
    if ext is not None:
        from .cuda import bias_act_cuda

        return bias_act_cuda(ext, x, b, dim, act, alpha, gain, clamp)
    return bias_act_ref(x, b, dim, act, alpha, gain, clamp)
