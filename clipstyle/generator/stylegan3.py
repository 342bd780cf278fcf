"""StyleGAN3 generator, configs T and R (Karras et al. 2021, "Alias-Free Generative Adversarial Networks").

Structure (paper §3, Fig. 4; App. F for the hyper-parameters): the mapping network turns z into w;
``ws`` row 0 drives a Fourier-feature input (§3.2 "Fourier features", rotated/translated by an affine of
w), rows 1…L+1 drive the synthesis layers ``L0 … L{L}``. Each layer is a modulated convolution (StyleGAN2's,
§2.2 of Karras et al. 2020) followed by the alias-free filtered leaky ReLU (§3.2 "Pointwise
nonlinearities", :func:`clipstyle.kernels.filtered_lrelu.filtered_lrelu`); the last layer is a toRGB
1×1 convolution without demodulation. Config T uses 3×3 convolutions and separable filters; config R
(§3.3 "Rotation equivariance") 1×1 convolutions and radially symmetric down-filters.

Parameter and buffer names follow NVIDIA's state dicts (``synthesis.L0_36_512.weight``,
``synthesis.input.affine.weight``, ``mapping.fc0.weight``, ``mapping.w_avg`` …) so snapshots load by name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from clipstyle.generator.base import (
    NOISE_MODES,
    FullyConnectedLayer,
    Generator,
    MappingConfig,
    MappingNetwork,
)
from clipstyle.generator.modconv import sum_hw_of_product
from clipstyle.kernels.filtered_lrelu import filtered_lrelu

__all__ = ["SG3LayerConfig", "StyleGAN3Config", "StyleGAN3Generator", "design_lowpass_filter"]


@dataclass(frozen=True)
class SG3LayerConfig:
    """One synthesis layer (all values as NVIDIA's ``SynthesisLayer`` stores them).

    Sizes are ``(width, height)`` in samples, sampling rates / cutoffs / half-widths in cycles per
    unit of the canvas (paper §3.2, App. F), ``padding`` = ``(x0, x1, y0, y1)`` of the upsampled image.
    """

    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    in_sampling_rate: float
    out_sampling_rate: float
    tmp_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]
    is_torgb: bool
    is_critically_sampled: bool
    conv_clamp: float | None

    def __post_init__(self) -> None:
        for name in ("in_size", "out_size", "padding"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))


@dataclass(frozen=True)
class StyleGAN3Config:
    """Everything that shapes a StyleGAN3 generator; JSON-serialisable through :meth:`to_dict` /
    :meth:`from_dict` (``StyleGAN3Config(**d)`` also accepts layers given as dicts).

    ``layers`` lists ``L0 … L{num_layers}`` (the last one is toRGB); ``num_ws = len(layers) + 1``.
    Filter taps are not stored here: they are state-dict buffers (``up_filter``/``down_filter``),
    designed from these values by :func:`design_lowpass_filter` when a network is built from scratch.
    Build a new configuration with :meth:`design`.
    """

    z_dim: int
    w_dim: int
    c_dim: int
    img_resolution: int
    img_channels: int
    input_channels: int
    input_size: tuple[int, int]
    input_sampling_rate: float
    input_bandwidth: float
    layers: tuple[SG3LayerConfig, ...]
    output_scale: float = 0.25
    mapping_layers: int = 2
    mapping_embed_features: int | None = None
    mapping_layer_features: int | None = None
    mapping_activation: str = "lrelu"
    mapping_lr_multiplier: float = 0.01
    kind: str = field(default="stylegan3", init=False)

    def __post_init__(self) -> None:
        layers = tuple(l if isinstance(l, SG3LayerConfig) else SG3LayerConfig(**l) for l in self.layers)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if not layers or not layers[-1].is_torgb or any(l.is_torgb for l in layers[:-1]):
            raise ValueError("layers must end with exactly one toRGB layer")
        if layers[-1].out_channels != self.img_channels or tuple(layers[-1].out_size) != (self.img_resolution,) * 2:
            raise ValueError("the toRGB layer must produce img_channels × img_resolution²")
        prev = (self.input_channels, self.input_size)
        for i, l in enumerate(layers):
            if (l.in_channels, l.in_size) != prev:
                raise ValueError(f"layer L{i} expects {l.in_channels} ch @ {l.in_size}, gets {prev[0]} ch @ {prev[1]}")
            prev = (l.out_channels, l.out_size)

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1

    def layer_names(self) -> list[str]:
        """NVIDIA's module names ``L{idx}_{out_width}_{out_channels}``."""
        return [f"L{i}_{l.out_size[0]}_{l.out_channels}" for i, l in enumerate(self.layers)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists; ``kind`` included)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleGAN3Config":
        """Inverse of :meth:`to_dict` (ignores ``kind``). Raises ``ValueError`` on unknown keys."""
        names = {f.name for f in fields(cls) if f.init}
        unknown = set(d) - names - {"kind"}
        if unknown:
            raise ValueError(f"unknown StyleGAN3Config keys: {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def design(cls, img_resolution: int, z_dim: int = 512, w_dim: int = 512, c_dim: int = 0, img_channels: int = 3,
               channel_base: int = 32768, channel_max: int = 512, num_layers: int = 14, num_critical: int = 2,
               first_cutoff: float = 2.0, first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
               margin_size: int = 10, filter_size: int = 6, lrelu_upsampling: int = 2, conv_kernel: int = 3,
               use_radial_filters: bool = False, conv_clamp: float | None = 256.0, output_scale: float = 0.25,
               mapping_layers: int = 2) -> "StyleGAN3Config":
        """The paper's layer schedule (§3.2, Fig. 4b, App. F). Defaults = config T; for config R pass
        ``conv_kernel=1, use_radial_filters=True`` and double ``channel_base``/``channel_max``.

        Cutoff ``f_c`` and stopband ``f_t`` grow geometrically from the first layer to the first critically
        sampled one (``f_c = s/2`` there, ``f_t = f_c · last_stopband_rel``); the sampling rate is the
        smallest power of two ≥ ``2 f_t`` (at most the image resolution); the transition half-width is
        ``max(f_t, s/2) − f_c``; every non-final layer has a ``margin_size``-sample border; channels are
        ``min(channel_base / 2 / f_c, channel_max)``.
        """
        n = num_layers
        exps = np.minimum(np.arange(n + 1) / (n - num_critical), 1)
        last_cutoff = img_resolution / 2
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exps
        stopbands = first_stopband * (last_cutoff * last_stopband_rel / first_stopband) ** exps
        rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, rates / 2) - cutoffs
        sizes = rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels
        layers = []
        for idx in range(n + 1):
            prev = max(idx - 1, 0)
            torgb = idx == n
            crit = idx >= n - num_critical
            kernel = 1 if torgb else conv_kernel
            tmp_rate = max(rates[prev], rates[idx]) * (1 if torgb else lrelu_upsampling)
            up = int(np.rint(tmp_rate / rates[prev]))
            down = int(np.rint(tmp_rate / rates[idx]))
            up_taps = filter_size * up if up > 1 and not torgb else 1
            down_taps = filter_size * down if down > 1 and not torgb else 1
            in_size, out_size = int(sizes[prev]), int(sizes[idx])
            # Padding of the upsampled image so that the output has out_size samples, centred the way
            # the paper's symmetric sample-grid interpretation requires (App. C.3 "upsampling").
            total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
            lo = (total + up) // 2
            layers.append(SG3LayerConfig(
                in_channels=int(channels[prev]), out_channels=int(channels[idx]),
                in_size=(in_size, in_size), out_size=(out_size, out_size),
                in_sampling_rate=float(rates[prev]), out_sampling_rate=float(rates[idx]),
                tmp_sampling_rate=float(tmp_rate), in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]), conv_kernel=kernel,
                up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
                down_radial=bool(use_radial_filters and not crit), padding=(lo, total - lo, lo, total - lo),
                is_torgb=torgb, is_critically_sampled=crit, conv_clamp=conv_clamp))
        return cls(z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                   input_channels=int(channels[0]), input_size=(int(sizes[0]),) * 2,
                   input_sampling_rate=float(rates[0]), input_bandwidth=float(cutoffs[0]), layers=tuple(layers),
                   output_scale=output_scale, mapping_layers=mapping_layers)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed sinc low-pass filter (paper §3.2 "Practical considerations", App. C), sum 1.

    Args:
        numtaps: filter length; 1 means "no filter" (returns ``None``).
        cutoff: cutoff frequency ``f_c``; width: transition band width (``2 · half_width``); fs: sampling rate.
        radial: a radially symmetric 2-D filter (jinc × separable Kaiser window) instead of a 1-D one.

    Returns:
        float32 ``[numtaps]`` (or ``[numtaps, numtaps]`` when ``radial``), or ``None``.
    """
    if numtaps == 1:
        return None
    atten = 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95   # Kaiser's attenuation estimate
    if atten > 50:                                                        # Kaiser's beta for that attenuation
        beta = 0.1102 * (atten - 8.7)
    else:
        beta = 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) if atten > 21 else 0.0
    window = np.kaiser(numtaps, beta)
    t = np.arange(numtaps) - (numtaps - 1) / 2
    if radial:
        r = np.hypot(*np.meshgrid(t / fs, t / fs))
        jinc = torch.special.bessel_j1(torch.from_numpy(2 * np.pi * cutoff * r)).numpy() / (np.pi * r)
        f = jinc * np.outer(window, window)
    else:
        f = np.sinc(2 * cutoff / fs * t) * window
    return torch.tensor(f / f.sum(), dtype=torch.float32)


class SynthesisInput(nn.Module):
    """Fourier-feature input (paper §3.2 "Fourier features", App. F): ``[N, w_dim] → [N, C, H, W]``.

    Features ``sin(2π (f · (A p + t₀) + φ))`` at sample positions ``p`` (pixel centres, in canvas units),
    for fixed frequencies ``f`` (``freqs [C, 2]``) and phases ``φ``. The affine ``[r_c, r_s, t_x, t_y]`` of w
    gives a rotation (normalised) and translation; they are composed with the user ``transform`` buffer
    (a 3×3 matrix, identity by default). Amplitudes fade out frequencies that would exceed the band.
    The features are then mixed by a learned ``[C, C]`` matrix.
    """

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        c = cfg.input_channels
        self.channels, self.size = c, cfg.input_size
        self.sampling_rate, self.bandwidth = cfg.input_sampling_rate, cfg.input_bandwidth
        self.weight = nn.Parameter(torch.randn([c, c]))
        self.affine = FullyConnectedLayer(cfg.w_dim, 4, bias_init=0.0)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        radius = cfg.input_bandwidth * torch.rand([c]).sqrt()            # uniform in the disc of radius f_c
        angle = 2 * math.pi * torch.rand([c])
        self.register_buffer("freqs", torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1))
        self.register_buffer("phases", torch.rand([c]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w ``[N, w_dim]`` → ``[N, C, H, W]`` (``channels_last`` memory format), dtype of the parameters."""
        t = self.affine(w)                                                     # [N, 4]
        t = t / t[:, :2].norm(dim=1, keepdim=True)                             # unit rotation part
        n = w.shape[0]
        eye = torch.eye(3, dtype=t.dtype, device=t.device)
        rot = eye.repeat(n, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        trans = eye.repeat(n, 1, 1)
        trans[:, 0, 2], trans[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rot @ trans @ self.transform.to(t.dtype).unsqueeze(0)              # [N, 3, 3]
        freqs = self.freqs.to(t.dtype)
        phases = self.phases.to(t.dtype) + (freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)   # [N, C]
        freqs = freqs.unsqueeze(0) @ m[:, :2, :2]                                          # [N, C, 2]
        amp = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        sw, sh = self.size
        gx = (torch.arange(sw, dtype=t.dtype, device=t.device) + (0.5 - sw / 2)) / self.sampling_rate
        gy = (torch.arange(sh, dtype=t.dtype, device=t.device) + (0.5 - sh / 2)) / self.sampling_rate
        x = (gx.reshape(1, 1, sw, 1) * freqs[:, None, None, :, 0] + gy.reshape(1, sh, 1, 1) * freqs[:, None, None, :, 1]
             + phases[:, None, None, :])                                       # [N, H, W, C]
        x = torch.sin(x * (2 * math.pi)) * amp[:, None, None, :]
        x = x @ (self.weight.to(t.dtype) / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU (paper §3.2, Fig. 4c); toRGB when ``cfg.is_torgb``.

    Buffers: ``magnitude_ema`` (the running mean of x² seen in training; the input is scaled by its
    inverse square root), ``up_filter``/``down_filter`` (``None`` where the rate does not change).
    """

    def __init__(self, cfg: SG3LayerConfig, w_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.conv_kernel
        self.affine = FullyConnectedLayer(w_dim, cfg.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([cfg.out_channels, cfg.in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([cfg.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", design_lowpass_filter(
            cfg.up_taps, cfg.in_cutoff, cfg.in_half_width * 2, cfg.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            cfg.down_taps, cfg.out_cutoff, cfg.out_half_width * 2, cfg.tmp_sampling_rate, radial=cfg.down_radial))
        self.weight_gain = 1 / math.sqrt(cfg.in_channels * k * k) if cfg.is_torgb else 1.0
        self.act_gain = 1.0 if cfg.is_torgb else math.sqrt(2)
        self.slope = 1.0 if cfg.is_torgb else 0.2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x ``[N, I, H_in, W_in]``, w ``[N, w_dim]`` → ``[N, O, H_out, W_out]`` (``channels_last``)."""
        styles = self.affine(w) * self.weight_gain                            # [N, I]
        x = modulated_conv2d(x, self.weight.to(x.dtype), styles, self.magnitude_ema.to(x.dtype).rsqrt(),
                             self.bias.to(x.dtype), padding=self.cfg.conv_kernel - 1, demodulate=not self.cfg.is_torgb)
        fu = None if self.up_filter is None else self.up_filter.to(x.dtype)
        fd = None if self.down_filter is None else self.down_filter.to(x.dtype)
        return filtered_lrelu(x, fu, fd, None, up=self.cfg.up_factor, down=self.cfg.down_factor,
                              padding=self.cfg.padding, gain=self.act_gain, slope=self.slope, clamp=self.cfg.conv_clamp)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, input_gain: torch.Tensor,
                     bias: torch.Tensor | None, padding: int, demodulate: bool) -> torch.Tensor:
    """StyleGAN3's modulated convolution plus bias (Karras et al. 2020 §2.2 eqs. 1–3, with StyleGAN3's
    pre-normalisation), computed as ``conv(x · s · g, ŵ) · d + b`` instead of with per-sample weights.

    With demodulation, ``ŵ = w / rms(w[o])`` per output channel and ``s ← s / rms(s)`` where the RMS runs
    over the *whole* ``[N, I]`` style tensor (so, in float64, results depend on the batch at ~1e-10),
    then ``d[n, o] = (Σ_{i,k} (ŵ[o,i,k] s[n,i])² + 1e-8)^-½``; without it ``d = 1``. ``g`` (``input_gain``,
    a scalar) is applied after demodulation. Args: x ``[N, I, H, W]``, weight ``[O, I, k, k]``, styles
    ``[N, I]``, bias ``[O]`` or ``None``. Returns ``[N, O, H + 2p − k + 1, W + 2p − k + 1]``.
    """
    dcoefs = None
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()   # [N, O]
    return _ModulatedConv.apply(x, styles * input_gain, dcoefs, bias, weight, padding)


class _ModulatedConv(torch.autograd.Function):
    """``y = conv(x · s[:, :, None, None], w) · d[:, :, None, None] + b`` with a lean backward.

    Saves ``x`` and ``y`` only (not ``x · s`` nor the undemodulated output); the scaling and bias happen
    in place. Gradients for ``x``, ``s``, ``d``, ``b``, and for ``w`` only when it requires one (then
    ``x · s`` is recomputed).
    """

    @staticmethod
    def forward(ctx, x, s, d, b, weight, padding):  # noqa: D401
        y = F.conv2d(x * s[:, :, None, None], weight, padding=padding)
        if d is not None:
            y.mul_(d[:, :, None, None])
        if b is not None:
            y.add_(b[None, :, None, None])
        ctx.save_for_backward(x, y, s, d, b, weight)
        ctx.padding = padding
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, y, s, d, b, weight = ctx.saved_tensors
        g_b = g.sum(dim=[0, 2, 3]) if b is not None else None
        g_d = None
        if d is not None:
            if ctx.needs_input_grad[2]:   # Σ g · (y − b) / d
                gy = sum_hw_of_product(g, y)
                if b is not None:
                    gy = gy - g.sum(dim=[2, 3]) * b[None, :]
                g_d = gy / d
            g = g * d[:, :, None, None]
        need_w = ctx.needs_input_grad[4]
        xs = x * s[:, :, None, None] if need_w else x   # only the shape/layout of x is read otherwise
        g_xs, g_w, _ = torch.ops.aten.convolution_backward(g, xs, weight, None, [1, 1], [ctx.padding] * 2, [1, 1],
                                                           False, [0, 0], 1, [True, need_w, False])
        g_s = sum_hw_of_product(g_xs, x) if ctx.needs_input_grad[1] else None
        g_x = g_xs.mul_(s[:, :, None, None]) if ctx.needs_input_grad[0] else None
        return g_x, g_s, g_d, g_b, g_w, None


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` → image ``[N, img_channels, R, R]``."""

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.num_ws = cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.output_scale = cfg.output_scale
        self.input = SynthesisInput(cfg)
        self.layer_names = cfg.layer_names()
        for name, lcfg in zip(self.layer_names, cfg.layers):
            setattr(self, name, SynthesisLayer(lcfg, cfg.w_dim))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws ``[N, num_ws, w_dim]`` → ``[N, C, R, R]`` (contiguous NCHW, dtype of the parameters;
        float32 unless the model was converted). ``noise_mode`` is validated and otherwise ignored
        (StyleGAN3 has no noise inputs).

        Raises:
            ValueError: bad ``ws`` shape or ``noise_mode``.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(self.input.weight.dtype)
        x = self.input(ws[:, 0])
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x, ws[:, i + 1])
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.contiguous()


class StyleGAN3Generator(Generator):
    """StyleGAN3 (T or R). Interface: :class:`clipstyle.generator.base.Generator`; ``kind = "stylegan3"``.

    * ``mapping(z [N, z_dim], c [N, c_dim] | None, truncation_psi, truncation_cutoff)`` → ws
      ``[N, num_ws, w_dim]`` (``num_ws = num_layers + 2``; all rows equal before truncation).
    * ``synthesis(ws, noise_mode)`` → image ``[N, img_channels, R, R]``, nominally in [-1, 1] (not
      clipped), in the parameters' dtype (float32 unless converted, e.g. ``.double()``); row 0 of ``ws``
      drives the Fourier input, row ``i`` layer ``L{i-1}``, the last row the toRGB layer.
    * ``block_resolutions()``: per ws row, the resolution of the detail it controls (2 × its layer's output
      cutoff; the input's bandwidth for row 0), e.g. ``[4, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 51, 64, 64, 64]``
      at 64²; ``sampling_rates()`` gives the rates the layers run at (``[16]*5 + [32]*4 + [64]*7``).

    Build one from scratch with ``StyleGAN3Generator(StyleGAN3Config.design(...))`` (random weights) or
    read a snapshot with :func:`clipstyle.generator.formats.nvidia_sg3.stylegan3_from_nvidia`.
    """

    kind = "stylegan3"

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        self.config = cfg
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, cfg.c_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.num_ws = cfg.num_ws
        self.synthesis = SynthesisNetwork(cfg)
        self.mapping = MappingNetwork(MappingConfig(
            z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws, num_layers=cfg.mapping_layers,
            embed_features=cfg.mapping_embed_features, layer_features=cfg.mapping_layer_features,
            activation=cfg.mapping_activation, lr_multiplier=cfg.mapping_lr_multiplier))

    def block_resolutions(self) -> list[int]:
        """Per ws row, the resolution of the detail it controls: ``2 · cutoff`` of its layer's output.

        A StyleGAN3 layer's signal is band-limited to its cutoff frequency ``f_c`` (paper §3.2, Fig. 4),
        so it carries the detail of a ``2·f_c``-pixel image even where it is sampled more densely
        (every layer of a 1024² model runs at ≥ 16² samples). Row 0 is the input's bandwidth. This
        gives StyleGAN3 the same coarse (≤ 8²) / middle / fine (≥ 64²) groups as StyleGAN2.
        :meth:`sampling_rates` gives the rates the layers run at.
        """
        cutoffs = [self.config.input_bandwidth] + [l.out_cutoff for l in self.config.layers]
        return [int(round(2 * f)) for f in cutoffs]

    def style_sites(self) -> list:
        """StyleSpace sites (:mod:`clipstyle.generator.stylespace`): the affine of every layer ``L{i}`` (row
        ``i + 1``; the last is the toRGB layer). The input's affine (a rotation/translation, row 0) is no style."""
        from clipstyle.generator.stylespace import StyleSite

        res = self.block_resolutions()
        return [StyleSite(name, getattr(self.synthesis, name).affine, "torgb" if lcfg.is_torgb else "conv",
                          res[i + 1], i + 1) for i, (name, lcfg) in enumerate(zip(self.synthesis.layer_names,
                                                                                     self.config.layers))]

    def sampling_rates(self) -> list[int]:
        """Per ws row: the input's sampling rate (row 0), then each layer's output sampling rate."""
        rates = [self.config.input_sampling_rate] + [l.out_sampling_rate for l in self.config.layers]
        return [int(round(r)) for r in rates]


def input_transform(rotate: float | None, translate: tuple[float, float] | None) -> torch.Tensor:
    """StyleGAN3's user transform of the input grid for a rotation by ``rotate`` degrees and a translation
    ``(x, y)`` (in units of the input's extent): the inverse of ``[[cos a, sin a, x], [-sin a, cos a, y],
    [0, 0, 1]]`` (Karras et al. 2021, §3.1: the input Fourier features are sampled on a transformed grid),
    float32 ``[3, 3]``, for ``G.synthesis.input.transform``."""
    import math

    tx, ty = translate if translate is not None else (0.0, 0.0)
    a = math.radians(rotate or 0.0)
    m = torch.tensor([[math.cos(a), math.sin(a), tx], [-math.sin(a), math.cos(a), ty], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    return torch.linalg.inv(m).to(torch.float32)
