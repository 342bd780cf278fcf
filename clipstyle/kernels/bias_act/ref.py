"""Pure-PyTorch reference of the fused bias + activation + gain + clamp op (source of truth).

Two equivalent paths:

* :func:`bias_act_naive` — the literal composition ``clamp(act(x + b) · gain)`` with autograd
  through every step. It defines the op; tests compare everything else against it.
* :func:`bias_act_ref` — what the library runs. For ``linear``, ``relu`` and ``lrelu`` (every
  activation the generators use) it is a custom autograd function that makes one new tensor and
  updates it in place (``x·g + b·g``, leaky ReLU, clamp: three memory passes instead of four
  allocations), and keeps only the *output* for the backward pass (the autograd composition keeps
  two full-size intermediates per call). The clamp costs one read-only pass (min/max) when nothing
  reaches it, the usual case, and then none in the backward pass. Since ``gain > 0`` commutes with (leaky) ReLU,
  ``lrelu(v)·g = lrelu(v·g)``, and the local derivative is recoverable from the output alone:
  ``g · (y > 0 ? 1 : alpha) · (|y| < clamp)``. The other activations use the composition.

Within float32 rounding the two agree (folding the gain into the addition changes the rounding
order, ~1 ulp). The only semantic difference is at the measure-zero set where ``act(x+b)·gain``
equals ``±clamp`` exactly: the composition passes the gradient there, the fused path does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Activation:
    """An activation with the default slope and gain used by StyleGAN (Karras et al. 2020, §B)."""

    name: str
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    code: int  # index used by the CUDA kernel


def _lrelu(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return F.leaky_relu(x, alpha)


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", lambda x, a: x, 0.0, 1.0, 1),
    "relu": Activation("relu", lambda x, a: F.relu(x), 0.0, math.sqrt(2), 2),
    "lrelu": Activation("lrelu", _lrelu, 0.2, math.sqrt(2), 3),
    "tanh": Activation("tanh", lambda x, a: torch.tanh(x), 0.0, 1.0, 4),
    "sigmoid": Activation("sigmoid", lambda x, a: torch.sigmoid(x), 0.0, 1.0, 5),
    "elu": Activation("elu", lambda x, a: F.elu(x), 0.0, 1.0, 6),
    "selu": Activation("selu", lambda x, a: F.selu(x), 0.0, 1.0, 7),
    "softplus": Activation("softplus", lambda x, a: F.softplus(x), 0.0, 1.0, 8),
    "swish": Activation("swish", lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9),
}

_FUSED = {"linear", "relu", "lrelu"}


def activation(act: str) -> Activation:
    """Look up an activation by name. Raises ``ValueError`` for an unknown name."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}") from None


def _bias_view(b: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return b.reshape(shape)


def bias_act_naive(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """The literal definition ``clamp(act(x + b) · gain, -clamp, clamp)``, ``b`` broadcast along ``dim``.

    Differentiable (any order) through autograd. Arguments as :func:`bias_act_ref`.
    """
    if b is not None:
        x = x + _bias_view(b, x.ndim, dim)
    x = activation(act).func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _flat(y: torch.Tensor) -> torch.Tensor:
    """All elements as a 1-D view when ``y`` is dense (NCHW or channels-last), else ``y`` (whose
    reductions would first copy it)."""
    if y.is_contiguous():
        return y.reshape(-1)
    if y.ndim == 4 and y.is_contiguous(memory_format=torch.channels_last):
        return y.permute(0, 2, 3, 1).reshape(-1)
    return y


class _BiasActPiecewiseLinear(torch.autograd.Function):
    """``linear`` / ``relu`` / ``lrelu`` with ``gain > 0``, saving only the output for backward."""

    @staticmethod
    def forward(ctx, x, b, dim, alpha, gain, clamp, use_act):  # noqa: D401
        if b is not None:
            bb = _bias_view(b.to(x.dtype), x.ndim, dim)
            y = torch.add(bb * gain, x, alpha=gain) if gain != 1 else x + bb
        elif gain != 1:
            y = x * gain
        else:
            y = None
        if use_act:
            y = F.leaky_relu(x, alpha) if y is None else F.leaky_relu_(y, alpha)
        if y is None:  # only a clamp: start from a copy (x itself is never modified)
            y = x.clone()
        if clamp is not None and y.numel() > 0:
            lo, hi = torch.aminmax(_flat(y.detach()))
            if lo.item() < -clamp or hi.item() > clamp:
                y.clamp_(-clamp, clamp)
            else:  # nothing to clip (the usual case): no clamp pass now, no mask pass in backward
                clamp = None
        ctx.save_for_backward(y)
        ctx.cfg = (dim, alpha, gain, clamp, use_act, b is not None)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dim, alpha, gain, clamp, use_act, has_bias = ctx.cfg
        g = grad
        if clamp is not None:
            g = torch.ops.aten.hardtanh_backward(g, y, -clamp, clamp)  # 0 where |y| >= clamp
        if use_act:
            g = torch.ops.aten.leaky_relu_backward(g, y, alpha, True)  # · (y > 0 ? 1 : alpha)
        if gain != 1:
            g = g.mul_(gain) if g is not grad and not torch.is_grad_enabled() else g * gain
        gx = g if ctx.needs_input_grad[0] else None
        gb = None
        if has_bias and ctx.needs_input_grad[1]:
            gb = g.sum(dim=[d for d in range(g.ndim) if d != dim % g.ndim])
        return gx, gb, None, None, None, None, None


def bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` with ``b`` broadcast along ``dim``.

    Args:
        x: any shape, floating point. b: ``[x.shape[dim]]`` or ``None``.
        dim: the dimension of ``x`` the bias runs along. act: a key of :data:`ACTIVATIONS`.
        alpha, gain: resolved floats (no ``None``). clamp: ``None`` or ``>= 0``.

    Returns:
        A tensor of ``x``'s shape and dtype (``x`` itself for the identity: linear, no bias,
        gain 1, no clamp). Differentiable w.r.t. ``x`` and ``b``.
    """
    if clamp is not None and clamp < 0:
        clamp = None
    if act in _FUSED and gain > 0 and alpha >= 0:
        if b is None and gain == 1 and act == "linear" and clamp is None:
            return x
        use_act = act != "linear"
        return _BiasActPiecewiseLinear.apply(x, b, dim, alpha if act == "lrelu" else 0.0, float(gain), clamp, use_act)
    return bias_act_naive(x, b, dim, act, alpha, gain, clamp)
