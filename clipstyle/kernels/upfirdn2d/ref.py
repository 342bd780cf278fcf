"""Pure-PyTorch reference of upfirdn2d: upsample (zero insertion), pad, FIR filter, downsample.

Definition, per axis, for input ``x`` of length ``L``, taps ``T``, ``g`` = the filter flipped
(``flip_filter=False``: true convolution) or as is (``True``: correlation), scaled by the gain::

    u[k]   = x[k / up] if k % up == 0 else 0             k in [0, L·up)
    p[j]   = u[j - pad0]  (0 outside)                    j in [0, L·up + pad0 + pad1)
    y[m]   = sum_t g[t] · p[m + t]                       m in [0, L·up + pad0 + pad1 - T]
    out[i] = y[i · down]                                 i in [0, ceil((len(y)) / down))

:func:`upfirdn2d_naive` computes exactly that (explicit zeros, one 2-D convolution, then slicing);
it is the source of truth. :func:`upfirdn2d_ref` — what runs — gives the same numbers (up to float
rounding) with far less work:

* upsampling never multiplies inserted zeros: a depthwise *transposed* convolution with stride
  ``up`` (the polyphase form; ``y[m] = z[m + T - 1 - pad0]`` where ``z`` is the full transposed
  convolution of ``x`` with ``flip(g)``), its symmetric crop done by the convolution's own padding;
* without upsampling, downsampling is a strided convolution (only the kept samples are computed)
  and the symmetric part of the padding is the convolution's own (no padded copy);
* 1-D filters run as two 1-D passes (W then H), the gain applied once; 2-D filters in one pass;
* the depthwise weights of a filter are built once per (filter tensor, version, channels, dtype)
  and cached (a filter that requires grad is never cached, so its gradient still flows);
* the memory format of ``x`` is kept (``channels_last`` is about 2× faster for oneDNN's depthwise
  kernels on CPU; converting an NCHW tensor just for one filter costs more than it saves).

Backward: a custom autograd function keeps only the filter (autograd through the convolutions
would keep their full-size inputs) and runs the adjoint upfirdn2d (:func:`adjoint_params`), itself
differentiable, so double backward works too. A filter that requires grad goes through plain
autograd instead, so it gets its gradient.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F


# --------------------------------------------------------------------------- naive definition
def upfirdn2d_naive(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """The literal definition (module docstring): zero insertion, pad/crop, filter, subsample.

    Slow (multiplies the inserted zeros, computes discarded samples) but obviously right.
    Arguments as :func:`upfirdn2d_ref`.
    """
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    if upx > 1 or upy > 1:  # each sample followed by up-1 zeros
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    if f is not None:
        f = f.to(x.dtype)
        if not flip_filter:
            f = f.flip(list(range(f.ndim)))
        if f.ndim == 1:  # separable: along W (carrying the gain), then along H
            x = F.conv2d(x, (f * gain)[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
            x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)
        else:
            x = F.conv2d(x, (f * gain)[None, None].expand(c, 1, *f.shape), groups=c)
    elif gain != 1:
        x = x * gain
    return x[:, :, ::downy, ::downx]


# --------------------------------------------------------------------------- weights
_CACHE: dict[tuple, tuple[weakref.ref, list[torch.Tensor]]] = {}
_CACHE_MAX = 512
_ONE_TAP = torch.ones([1, 1])  # the identity filter (pure zero insertion), cached like any other


def _weights(f: torch.Tensor, channels: int, flip_filter: bool, gain: float, dtype: torch.dtype,
             device: torch.device) -> list[torch.Tensor]:
    """Depthwise *correlation* weights for ``f``: ``[C,1,1,Tx]`` and ``[C,1,Ty,1]`` (1-D, gain on the
    first) or one ``[C,1,Ty,Tx]`` (2-D). Cached per filter tensor while it is alive and unmodified."""
    cacheable = not (f.requires_grad and torch.is_grad_enabled())
    key = (id(f), f._version, channels, flip_filter, float(gain), dtype, device)
    if cacheable:
        hit = _CACHE.get(key)
        if hit is not None and hit[0]() is f:
            return hit[1]
    g = f.to(device=device, dtype=dtype)
    if not flip_filter:
        g = g.flip(list(range(g.ndim)))
    if g.ndim == 1:
        t = g.shape[0]
        ws = [(g * gain).reshape(1, 1, 1, t).expand(channels, 1, 1, t).contiguous(),
              g.reshape(1, 1, t, 1).expand(channels, 1, t, 1).contiguous()]
    else:
        ws = [(g * gain).reshape(1, 1, *g.shape).expand(channels, 1, *g.shape).contiguous()]
    if cacheable:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = (weakref.ref(f, lambda _r, k=key: _CACHE.pop(k, None)), ws)
    return ws


# --------------------------------------------------------------------------- one pass
def _window(x: torch.Tensor, ys: tuple[int, int], xs: tuple[int, int]) -> torch.Tensor:
    """Rows ``[ys[0], ys[1])`` and columns ``[xs[0], xs[1])`` of ``x`` extended by zeros on all sides."""
    sl, pads = [], []
    for (start, stop), length in ((ys, x.shape[2]), (xs, x.shape[3])):
        lo, hi = max(start, 0), min(stop, length)
        if hi <= lo:  # nothing of x inside: all zeros
            sl.append(slice(0, 0))
            pads += [stop - start, 0]
        else:
            sl.append(slice(lo, hi))
            pads += [lo - start, stop - hi]
    if sl[0] != slice(0, x.shape[2]) or sl[1] != slice(0, x.shape[3]):
        x = x[:, :, sl[0], sl[1]]
    if any(pads):
        x = F.pad(x, [pads[2], pads[3], pads[0], pads[1]])
    return x


def _pass(x: torch.Tensor, w: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
          pad: tuple[int, int, int, int]) -> torch.Tensor:
    """One depthwise resampling pass with kernel ``w`` ``[C,1,kh,kw]``: the correlation kernel ``g``
    when ``up == (1, 1)``, else ``flip(g)`` (the transposed convolution's kernel).

    ``up``/``down`` as ``(y, x)``; ``pad`` as ``(y0, y1, x0, x1)`` on the upsampled grid.
    """
    c, (kh, kw) = x.shape[1], w.shape[2:]
    if up == (1, 1):
        # Wanted: window [-p0, L + p1) of x; the symmetric part min(p0, p1) > 0 is the conv's own padding.
        sy, sx = max(0, min(pad[0], pad[1])), max(0, min(pad[2], pad[3]))
        x = _window(x, (sy - pad[0], x.shape[2] + pad[1] - sy), (sx - pad[2], x.shape[3] + pad[3] - sx))
        return F.conv2d(x, w, stride=down, padding=(sy, sx), groups=c)
    # Polyphase upsampling: z = full transposed conv (length (L-1)·up + k); wanted z[k-1-p0 : ...).
    crops, spans = [], []
    for k, length, u, p0, p1 in ((kh, x.shape[2], up[0], pad[0], pad[1]), (kw, x.shape[3], up[1], pad[2], pad[3])):
        full = (length - 1) * u + k
        start = k - 1 - p0
        stop = start + length * u + p0 + p1 - k + 1
        sym = max(0, min(start, full - stop))  # done by the transposed conv's padding
        crops.append(sym)
        spans.append((start - sym, stop - sym))
    x = F.conv_transpose2d(x, w, stride=up, padding=tuple(crops), groups=c)
    x = _window(x, *spans)
    if down != (1, 1):
        x = x[:, :, ::down[0], ::down[1]]
    return x


def adjoint_params(in_hw: tuple[int, int], out_hw: tuple[int, int], taps_hw: tuple[int, int], up: tuple[int, int],
                   down: tuple[int, int], pad: tuple[int, int, int, int]):
    """``(up', down', pad')`` of the adjoint of an upfirdn2d (its backward w.r.t. ``x``).

    Per axis, with input length ``L``, output length ``O`` and ``T`` taps: ``up' = down``,
    ``down' = up``, ``pad0' = T - 1 - pad0``, ``pad1' = L·up - O·down + pad0 - up + 1`` — zero-insert
    the gradient by ``down``, correlate with the reversed filter (``flip_filter`` negated, same gain),
    keep every ``up``-th sample; the paddings make the result exactly ``L`` long.
    Sizes as ``(h, w)``; ``up``/``down`` as ``(x, y)``; ``pad`` as ``(x0, x1, y0, y1)`` (also returned so).
    """
    (h, w), (oh, ow), (th, tw) = in_hw, out_hw, taps_hw
    (upx, upy), (downx, downy) = up, down
    px0, _, py0, _ = pad
    pad_adj = (tw - 1 - px0, w * upx - ow * downx + px0 - upx + 1,
               th - 1 - py0, h * upy - oh * downy + py0 - upy + 1)
    return (downx, downy), (upx, upy), pad_adj


def _upfirdn2d_fast(x: torch.Tensor, f: torch.Tensor | None, up: tuple[int, int], down: tuple[int, int],
                    padding: tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """The polyphase / strided passes (module docstring); arguments as :func:`upfirdn2d_ref`."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    if f is None:
        if upx == upy == 1:
            x = _window(x, (-py0, h + py1), (-px0, w + px1))[:, :, ::downy, ::downx]
            return x * gain if gain != 1 else x
        f = _ONE_TAP
    # The transposed (upsampling) passes need flip(g), i.e. the weights of the opposite flip_filter.
    if f.ndim == 2:
        (w2,) = _weights(f, c, flip_filter != (upx > 1 or upy > 1), gain, x.dtype, x.device)
        return _pass(x, w2, (upy, upx), (downy, downx), (py0, py1, px0, px1))
    wx = _weights(f, c, flip_filter != (upx > 1), gain, x.dtype, x.device)[0]
    wy = _weights(f, c, flip_filter != (upy > 1), gain, x.dtype, x.device)[1]
    x = _pass(x, wx, (1, upx), (1, downx), (0, 0, px0, px1))
    return _pass(x, wy, (upy, 1), (downy, 1), (py0, py1, 0, 0))


class _Upfirdn2dRef(torch.autograd.Function):
    """Keeps nothing but the filter for backward (autograd through the convolutions would keep their
    inputs, e.g. the full-resolution output of StyleGAN2's transposed convolution); the backward pass
    is the adjoint upfirdn2d, itself differentiable (so double backward works)."""

    @staticmethod
    def forward(ctx, x, f, up, down, padding, flip_filter, gain):  # noqa: D401
        y = _upfirdn2d_fast(x, f, up, down, padding, flip_filter, gain)
        if f is not None:
            ctx.save_for_backward(f)  # version-checked: an in-place change before backward is an error
        taps = (1, 1) if f is None else (f.shape[0], f.shape[-1])
        ctx.adj = adjoint_params(tuple(x.shape[2:]), tuple(y.shape[2:]), taps, up, down, padding)
        ctx.flip, ctx.gain, ctx.has_f = flip_filter, gain, f is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        f = ctx.saved_tensors[0] if ctx.has_f else None
        up, down, pad = ctx.adj
        gx = _Upfirdn2dRef.apply(grad, f, up, down, pad, not ctx.flip, ctx.gain)
        return gx, None, None, None, None, None, None


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Reference upfirdn2d (fast form; see the module docstring).

    Args:
        x: ``[N, C, H, W]`` floating point, any memory format (kept).
        f: 1-D ``[T]`` (separable) or 2-D ``[Ty, Tx]`` filter, or ``None`` (identity).
        up, down: ``(x, y)`` integer factors >= 1. padding: ``(x0, x1, y0, y1)``, negative crops.
        flip_filter: ``False`` = convolution, ``True`` = correlation. gain: overall scale.

    Returns:
        ``[N, C, H_out, W_out]`` of ``x``'s dtype (sizes in :mod:`clipstyle.kernels.upfirdn2d`).
        Differentiable w.r.t. ``x`` (any order) and, when it requires grad, ``f``.

    Raises:
        ValueError: the padded/upsampled image is smaller than the filter.
    """
    h, w = x.shape[2], x.shape[3]
    fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    if h * up[1] + padding[2] + padding[3] < fh or w * up[0] + padding[0] + padding[1] < fw:
        raise ValueError(f"upfirdn2d: the padded image ({h * up[1] + padding[2] + padding[3]}x"
                         f"{w * up[0] + padding[0] + padding[1]}) is smaller than the filter ({fh}x{fw})")
    if (f is None and up == (1, 1)) or (f is not None and f.requires_grad and torch.is_grad_enabled()):
        return _upfirdn2d_fast(x, f, up, down, padding, flip_filter, gain)  # autograd through the ops
    return _Upfirdn2dRef.apply(x, f, tuple(up), tuple(down), tuple(padding), bool(flip_filter), float(gain))
