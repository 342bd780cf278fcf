"""Pure-PyTorch reference of the fused bias + activation + gain + clamp op (source of truth)."""

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


def activation(act: str) -> Activation:
    """Look up an activation by name. Raises ``ValueError`` for an unknown name."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}") from None


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

    All arguments are already resolved (no ``None`` defaults for ``alpha``/``gain``).
    """
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    x = activation(act).func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
