"""Pure-PyTorch reference of the filtered leaky ReLU (the source of truth for the CUDA version).

Semantics (Karras et al. 2021, "Alias-Free Generative Adversarial Networks", §3.2 and Fig. 4c):
``y = down(clamp(lrelu(up(x + b)) · gain))`` where ``up`` is :func:`~clipstyle.kernels.upfirdn2d.upfirdn2d`
with ``up``, ``padding``, filter ``fu`` and gain ``up²``, ``lrelu``/``gain``/``clamp`` are
:func:`~clipstyle.kernels.bias_act.bias_act`'s, and ``down`` is ``upfirdn2d`` with ``down`` and ``fd``
(no padding). The test suite checks this equality against that literal composition.

How it is computed (same numbers, far less work than the literal composition):

* Upsampling never multiplies inserted zeros: every 1-D pass is a depthwise *transposed* convolution
  with stride ``up`` (the polyphase form), cropped/padded to the requested window.
* Downsampling never computes discarded samples: a depthwise convolution with stride ``down``.
* 1-D (separable) filters run as two 1-D passes, W then H for ``up`` (at the low rate) and W then H
  for ``down`` (shrinking first); 2-D filters (e.g. StyleGAN3-R's radial down-filters) run as one pass.
* float32/16 data runs in ``channels_last`` memory format, where oneDNN's depthwise kernels are fast on
  CPU, and the result comes back in that format (shape and values do not depend on it); other dtypes
  (float64) fold the channels into the batch instead of looping over them.
* The activation gain (> 0) is folded into the up-filter (``lrelu(v)·g = lrelu(g·v)``); the leaky ReLU
  and the clamp run in place on the upsampled tensor (the clamp only when something exceeds it).
* A custom autograd function keeps only one ``bool`` per upsampled sample (its sign; plus a second one
  only when the clamp cut something) for the backward pass, which applies the adjoint passes in reverse
  order. Only first derivatives are supported (no double backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..bias_act import bias_act

_CL = torch.channels_last


def _axis_kernels(f: torch.Tensor | None, channels: int, gain: float, flip: bool, dtype: torch.dtype,
                  device: torch.device) -> list[tuple[torch.Tensor, int]]:
    """Depthwise conv weights for a filter, each with the axes it spans (1 = W only, 2 = H only, 3 = both).

    A 1-D filter gives two ``[C, 1, 1, K]`` / ``[C, 1, K, 1]`` kernels scaled by ``sqrt(gain)`` each;
    a 2-D ``[Kh, Kw]`` filter gives one ``[C, 1, Kh, Kw]`` kernel scaled by ``gain``; ``None`` gives a
    1-tap kernel per axis (pure zero insertion / subsampling).
    """
    if f is None:
        f = torch.ones([1], dtype=torch.float64)
    f = f.to(device=device, dtype=dtype)
    if flip:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1:
        taps = f * (gain ** 0.5)
        k = taps.numel()
        wx = taps.reshape(1, 1, 1, k).expand(channels, 1, 1, k).contiguous()
        wy = taps.reshape(1, 1, k, 1).expand(channels, 1, k, 1).contiguous()
        return [(wx, 1), (wy, 2)]
    kh, kw = f.shape
    return [((f * gain).reshape(1, 1, kh, kw).expand(channels, 1, kh, kw).contiguous(), 3)]


def _pair_for(axes: int, v: int, other: int = 0) -> tuple[int, int]:
    """(y, x) argument for a pass over ``axes``: ``v`` on the covered axes, ``other`` elsewhere."""
    return (v if axes & 2 else other, v if axes & 1 else other)


# dtypes for which oneDNN's depthwise kernels run on CPU. Others (float64) would fall back to one im2col
# convolution per channel; for them the filter taps are applied as shifted, strided multiply-adds.
_GROUPED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _depthwise(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int] = (0, 0),
               transposed: bool = False, output_padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``conv2d`` / ``conv_transpose2d`` of every channel with ``weight`` ``[C, 1, kh, kw]`` (one filter
    shared by all channels; same arguments and result as the grouped PyTorch calls)."""
    if x.is_cuda or x.dtype in _GROUPED_DTYPES:
        x = x.contiguous(memory_format=_CL)
        if transposed:
            return F.conv_transpose2d(x, weight, stride=stride, padding=padding, output_padding=output_padding,
                                      groups=x.shape[1])
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=x.shape[1])
    taps = weight[0, 0].tolist()
    (sy, sx), (py, px) = stride, padding
    n, c, h, w = x.shape
    kh, kw = len(taps), len(taps[0])
    if transposed:   # out[i·s + a − p] += w[a] · x[i]
        full = x.new_zeros([n, c, (h - 1) * sy + kh + output_padding[0], (w - 1) * sx + kw + output_padding[1]])
        for a in range(kh):
            for b in range(kw):
                if taps[a][b] != 0:
                    full[:, :, a: a + sy * (h - 1) + 1: sy, b: b + sx * (w - 1) + 1: sx].add_(x, alpha=taps[a][b])
        return full[:, :, py: full.shape[2] - py, px: full.shape[3] - px]
    x = F.pad(x, [px, px, py, py]) if px or py else x   # out[o] = Σ_a w[a] · x[o·s + a − p]
    ho, wo = (x.shape[2] - kh) // sy + 1, (x.shape[3] - kw) // sx + 1
    out = x.new_zeros([n, c, ho, wo])
    for a in range(kh):
        for b in range(kw):
            if taps[a][b] != 0:
                out.add_(x[:, :, a: a + sy * (ho - 1) + 1: sy, b: b + sx * (wo - 1) + 1: sx], alpha=taps[a][b])
    return out


def _row_chunks(x: torch.Tensor, elements: int = 1 << 22) -> list[tuple[slice, slice, slice]]:
    """Index tuples that cut ``x`` ``[N, C, H, W]`` into slabs of whole rows of about ``elements`` each."""
    rows = max(1, elements // max(1, x.shape[0] * x.shape[1] * x.shape[3]))
    return [(slice(None), slice(None), slice(h, h + rows)) for h in range(0, x.shape[2], rows)]


def _flat(x: torch.Tensor) -> torch.Tensor:
    """All elements as a 1-D tensor (a view for contiguous and channels_last tensors)."""
    return x.reshape(-1) if x.is_contiguous() else x.permute(0, 2, 3, 1).reshape(-1)


def _crop_pad(x: torch.Tensor, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    """Add (positive) or remove (negative) rows/columns at each border; no-op when all are zero."""
    if y0 < 0 or y1 < 0 or x0 < 0 or x1 < 0:
        h, w = x.shape[2], x.shape[3]
        x = x[:, :, max(-y0, 0): h - max(-y1, 0), max(-x0, 0): w - max(-x1, 0)]
    if y0 > 0 or y1 > 0 or x0 > 0 or x1 > 0:
        x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    return x


class _UpPass:
    """One polyphase upsampling pass: ``conv_transpose2d`` (stride ``up``) + crop/pad to the window."""

    def __init__(self, weight: torch.Tensor, axes: int, up: int, pads: tuple[int, int, int, int],
                 in_hw: tuple[int, int]) -> None:
        self.weight, self.axes, self.up = weight, axes, up
        kh, kw = weight.shape[2], weight.shape[3]
        crop, edge = [], []
        for axis, (k, length, p0, p1) in ((2, (kh, in_hw[0], pads[2], pads[3])), (1, (kw, in_hw[1], pads[0], pads[1]))):
            if not axes & axis:
                crop.append(0)
                edge.append((0, 0))
                continue
            full = (length - 1) * up + k                       # length of the complete transposed output
            start = k - 1 - p0                                 # first wanted index in it
            stop = start + length * up + p0 + p1 - k + 1       # one past the last wanted index
            c = max(0, min(start, full - stop))                # symmetric part, done by the conv itself
            crop.append(c)
            edge.append((c - start, stop - (full - c)))        # rows to add (+) / remove (-) afterwards
        self.padding = (crop[0], crop[1])
        self.edge = (edge[0][0], edge[0][1], edge[1][0], edge[1][1])   # (y0, y1, x0, x1)
        self.in_hw = in_hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _depthwise(x, self.weight, _pair_for(self.axes, self.up, 1), self.padding, transposed=True)
        return _crop_pad(x, *self.edge)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.edge
        g = _crop_pad(g, -y0, -y1, -x0, -x1)
        return _depthwise(g, self.weight, _pair_for(self.axes, self.up, 1), self.padding)


class _PadPass:
    """Padding/cropping only (``up == 1`` without a filter)."""

    def __init__(self, pads: tuple[int, int, int, int]) -> None:
        self.edge = (pads[2], pads[3], pads[0], pads[1])   # (y0, y1, x0, x1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _crop_pad(x, *self.edge)

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        y0, y1, x0, x1 = self.edge
        return _crop_pad(g, -y0, -y1, -x0, -x1)


class _DownPass:
    """One downsampling pass: a 'valid' depthwise ``conv2d`` with stride ``down``."""

    def __init__(self, weight: torch.Tensor, axes: int, down: int, in_hw: tuple[int, int]) -> None:
        self.weight, self.axes, self.down = weight, axes, down
        kh, kw = weight.shape[2], weight.shape[3]
        self.out_hw = ((in_hw[0] - kh) // down + 1 if axes & 2 else in_hw[0],
                       (in_hw[1] - kw) // down + 1 if axes & 1 else in_hw[1])
        self.output_padding = ((in_hw[0] - kh) % down if axes & 2 else 0, (in_hw[1] - kw) % down if axes & 1 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _depthwise(x, self.weight, _pair_for(self.axes, self.down, 1))

    def adjoint(self, g: torch.Tensor) -> torch.Tensor:
        return _depthwise(g, self.weight, _pair_for(self.axes, self.down, 1), transposed=True,
                          output_padding=self.output_padding)


def _plan(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, up: int, down: int,
          padding: tuple[int, int, int, int], flip_filter: bool,
          up_gain: float) -> tuple[list[_UpPass | _PadPass], list[_DownPass]]:
    """The resampling passes for this input shape (cheap: filters are tiny; nothing is designed here).
    The up-filter carries ``up² · up_gain``."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    ups: list[_UpPass | _PadPass] = []
    hw = (h, w)
    if up == 1 and fu is None and up_gain == 1:   # padding/cropping only
        ups.append(_PadPass(padding))
        hw = (h + padding[2] + padding[3], w + padding[0] + padding[1])
    else:
        for weight, axes in _axis_kernels(fu, c, float(up * up) * up_gain, flip_filter, x.dtype, x.device):
            pads = {1: (padding[0], padding[1], 0, 0), 2: (0, 0, padding[2], padding[3])}.get(axes, padding)
            p = _UpPass(weight, axes, up, pads, hw)
            ups.append(p)
            kh, kw = weight.shape[2], weight.shape[3]
            hw = (hw[0] * up + pads[2] + pads[3] - kh + 1 if axes & 2 else hw[0],
                  hw[1] * up + pads[0] + pads[1] - kw + 1 if axes & 1 else hw[1])
    if hw[0] < 1 or hw[1] < 1:
        raise ValueError(f"filtered_lrelu: the upsampled image would be {hw[0]}x{hw[1]}; check padding")
    downs: list[_DownPass] = []
    if not (down == 1 and fd is None):
        for weight, axes in _axis_kernels(fd, c, 1.0, not flip_filter, x.dtype, x.device):
            kh, kw = weight.shape[2], weight.shape[3]
            if (axes & 2 and hw[0] < kh) or (axes & 1 and hw[1] < kw):
                raise ValueError(f"filtered_lrelu: the upsampled image ({hw[0]}x{hw[1]}) is smaller than the "
                                 f"down-filter ({kh}x{kw})")
            p = _DownPass(weight, axes, down, hw)
            downs.append(p)
            hw = p.out_hw
    return ups, downs


class _FilteredLReLU(torch.autograd.Function):
    """Autograd wrapper. Saved for backward: which upsampled samples were <= 0 (``bool``) and, only when
    the clamp actually cut something, which were left unclamped (``bool``)."""

    @staticmethod
    def forward(ctx, x, b, fu, fd, up, down, padding, gain, slope, clamp, flip_filter):  # noqa: D401
        # lrelu(v)·gain == lrelu(v·gain) for gain > 0, so the gain rides on the up-filter (one pass less).
        fold = gain > 0
        ups, downs = _plan(x, fu, fd, up, down, padding, flip_filter, gain if fold else 1.0)
        y = bias_act(x, b, impl="ref") if b is not None else x
        for p in ups:
            y = p.forward(y)
        if b is None and not any(isinstance(p, _UpPass) for p in ups):   # y may alias x: never modify x
            y = y.clone()
        negative = None
        if slope != 1:
            negative = y <= 0
            F.leaky_relu_(y, slope)
        if not fold:
            y.mul_(gain)
        unclamped = None
        if clamp is not None and y.numel() > 0:
            lo, hi = torch.aminmax(_flat(y))
            if lo.item() < -clamp or hi.item() > clamp:
                unclamped = y.abs() <= clamp
                y.clamp_(-clamp, clamp)
        for p in downs:
            y = p.forward(y)
        ctx.save_for_backward(negative, unclamped)
        ctx.passes = (ups, downs)
        ctx.act = (1.0 if fold else gain, slope)
        ctx.has_bias = b is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        negative, unclamped = ctx.saved_tensors
        ups, downs = ctx.passes
        gain, slope = ctx.act
        g = grad
        for p in reversed(downs):
            g = p.adjoint(g)
        if not downs:   # g may alias the incoming gradient: never modify it
            g = g.clone()
        for rows in _row_chunks(g):   # in place, in slabs: the bool → float temporaries stay small
            if negative is not None:
                g[rows].addcmul_(g[rows], negative[rows], value=slope - 1)   # g · slope where the input was <= 0
            if unclamped is not None:
                g[rows].mul_(unclamped[rows])
        if gain != 1:
            g.mul_(gain)
        for p in reversed(ups):
            g = p.adjoint(g)
        gx = g if ctx.needs_input_grad[0] else None
        gb = g.sum(dim=[0, 2, 3]) if ctx.has_bias and ctx.needs_input_grad[1] else None
        return gx, gb, None, None, None, None, None, None, None, None, None


def filtered_lrelu_ref(
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
    """Reference filtered leaky ReLU; arguments already validated and normalised (``padding`` as
    ``(x0, x1, y0, y1)``, ``clamp`` ``None`` for none). See :func:`clipstyle.kernels.filtered_lrelu.filtered_lrelu`.

    Returns a ``channels_last`` tensor ``[N, C, H_out, W_out]`` of ``x``'s dtype.
    """
    return _FilteredLReLU.apply(x, b, fu, fd, up, down, padding, gain, slope, clamp, flip_filter)
