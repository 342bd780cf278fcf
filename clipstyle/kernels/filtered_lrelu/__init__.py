"""filtered_lrelu: upsample → bias-free leaky ReLU (+gain, +clamp) → downsample, as one op.

The alias-free nonlinearity of StyleGAN3 (Karras et al. 2021, "Alias-Free Generative Adversarial
Networks", §3.2 "Pointwise nonlinearities" and Fig. 4c): a pointwise nonlinearity creates arbitrarily
high frequencies, so it is applied at a temporarily higher sampling rate — upsample by ``up`` with a
low-pass filter, apply the leaky ReLU, low-pass filter again and downsample by ``down``.

Exactly::

    y = upfirdn2d(x + b, fu, up=up, padding=padding, gain=up**2, flip_filter=flip_filter)
    y = bias_act(y, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    y = upfirdn2d(y, fd, down=down, flip_filter=flip_filter)

(``b`` broadcast along channels; :mod:`clipstyle.kernels.upfirdn2d`, :mod:`clipstyle.kernels.bias_act`).
For one axis of input length ``L``: the upsampled length is ``Lu = L·up + p0 + p1 − len(fu) + 1`` and
the output length ``(Lu − len(fd)) // down + 1``.
"""

from __future__ import annotations

import math

import torch

from .._dispatch import choose, filters_in_float32
from ..upfirdn2d import parse_padding
from .ref import filtered_lrelu_ref

__all__ = ["filtered_lrelu"]


def _cuda_loader():
    from . import cuda  # built lazily on first use, never at import

    return cuda.load()


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | tuple | list = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str = "auto",
) -> torch.Tensor:
    """Filtered leaky ReLU: bias, upsample, lrelu·gain, clamp, downsample.

    Args:
        x: ``[N, C, H, W]`` float tensor (float32 or float64; any memory format).
        fu: upsampling filter, 1-D ``[taps]`` (separable) or 2-D ``[taps_y, taps_x]``, or ``None``
            (zero insertion only). Taps are used as given (normalise them yourself); gain ``up²`` is applied.
        fd: downsampling filter, same conventions, or ``None`` (plain subsampling).
        b: bias ``[C]`` added before upsampling, or ``None``.
        up: integer upsampling factor >= 1 (both axes).
        down: integer downsampling factor >= 1 (both axes).
        padding: ``p``, ``(px, py)`` or ``(px0, px1, py0, py1)``, applied to the upsampled image;
            negative values crop.
        gain: multiplier after the activation (default sqrt(2)).
        slope: leaky ReLU slope for negative inputs (default 0.2; 1 makes the activation linear).
        clamp: clamp the activation output to ``[-clamp, clamp]``; ``None`` (or negative) = no clamp.
        flip_filter: ``False`` = true convolution with the filters, ``True`` = correlation.
        impl: ``auto`` | ``ref`` | ``cuda`` (see :mod:`clipstyle.kernels`).

    Returns:
        ``[N, C, H_out, W_out]`` tensor of ``x``'s dtype (sizes in the module docstring); the reference
        returns it in ``channels_last`` memory format. Differentiable once w.r.t. ``x`` and ``b``
        (not w.r.t. the filters).

    Raises:
        ValueError: bad shapes, factors, filters, or a padding that leaves nothing to filter.
    """
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu: x must be [N, C, H, W], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"filtered_lrelu: x must be a floating-point tensor, got {x.dtype}")
    for name, f in (("fu", fu), ("fd", fd)):
        if f is not None and (f.ndim not in (1, 2) or f.numel() == 0):
            raise ValueError(f"filtered_lrelu: {name} must be a non-empty 1-D or 2-D filter, got shape {list(f.shape)}")
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[1]):
        raise ValueError(f"filtered_lrelu: bias must have shape [{x.shape[1]}], got {list(b.shape)}")
    if int(up) != up or int(down) != down or up < 1 or down < 1:
        raise ValueError(f"filtered_lrelu: up and down must be integers >= 1, got up={up}, down={down}")
    pad = parse_padding(padding)
    clamp = None if clamp is None or clamp < 0 else float(clamp)
    ext = choose("filtered_lrelu", impl, x, _cuda_loader if x.is_cuda else None)
    if ext is not None:
        from .cuda import filtered_lrelu_cuda

        return filtered_lrelu_cuda(ext, x, fu, fd, b, int(up), int(down), pad, float(gain), float(slope), clamp,
                                   bool(flip_filter))
    if filters_in_float32(x):  # CPU, 16-bit or autocast: the filters run in float32 (see the helper)
        with torch.autocast("cpu", enabled=False):
            return filtered_lrelu_ref(x.float(), None if fu is None else fu.float(),
                                      None if fd is None else fd.float(), None if b is None else b.float(),
                                      int(up), int(down), pad, float(gain), float(slope), clamp,
                                      bool(flip_filter)).to(x.dtype)
    return filtered_lrelu_ref(x, fu, fd, b, int(up), int(down), pad, float(gain), float(slope), clamp,
                              bool(flip_filter))
