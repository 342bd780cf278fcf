"""StyleGAN2 generator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
and the ADA paper's PyTorch configuration, Karras et al. 2020, "Training GANs with Limited Data").

Parameter and buffer names follow NVIDIA's published state dicts (``synthesis.b64.conv1.affine.weight``…)
so their snapshots load by name; the readers of other formats map onto these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from clipstyle.generator.base import (
    FullyConnectedLayer,
    Generator,
    MappingConfig,
    MappingNetwork,
)
from clipstyle.generator.modconv import scale_channels, styled_conv2d
from clipstyle.kernels import bias_act, setup_filter, upfirdn2d, upsample2d
from clipstyle.kernels.bias_act import activation as activation_spec
from clipstyle.kernels.upfirdn2d import filter_size

ARCHITECTURES = ("orig", "skip", "resnet")


def channels_for(img_resolution: int, channel_base: int = 32768, channel_max: int = 512) -> tuple[int, ...]:
    """Channel count of each block, 4² … img_resolution²: ``min(channel_base // res, channel_max)``."""
    return tuple(min(channel_base // (2**k), channel_max) for k in range(2, int(math.log2(img_resolution)) + 1))


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything that shapes a StyleGAN2 generator (JSON-serialisable; rebuilds it exactly)."""

    z_dim: int
    w_dim: int
    c_dim: int
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]  # per block, resolutions 4, 8, …, img_resolution
    mapping_layers: int = 8
    mapping_embed_features: int | None = None
    mapping_layer_features: int | None = None
    mapping_activation: str = "lrelu"
    mapping_lr_multiplier: float = 0.01
    architecture: str = "skip"
    conv_clamp: float | None = None
    num_fp16_res: int = 0  # recorded only; CPU and parity runs compute every layer in float32
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    use_noise: bool = True
    activation: str = "lrelu"
    kind: str = field(default="stylegan2", init=False)

    def __post_init__(self) -> None:
        log2 = math.log2(self.img_resolution)
        if self.img_resolution < 4 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {self.img_resolution}")
        if len(self.channels) != int(log2) - 1:
            raise ValueError(f"channels must list {int(log2) - 1} blocks (4..{self.img_resolution}), got {len(self.channels)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**k for k in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2


def modulated_conv2d(
    x: torch.Tensor,            # [N, I, H, W]
    weight: torch.Tensor,       # [O, I, k, k]
    styles: torch.Tensor,       # [N, I]
    noise: torch.Tensor | None = None,  # broadcastable to [N, O, H', W']
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
) -> torch.Tensor:
    """Modulated convolution with optional demodulation (StyleGAN2 paper, §2.2, eqs. 1–3).

    ``w'_{n,o,i,..} = w_{o,i,..} · s_{n,i}``; with demodulation ``w'' = w' / sqrt(Σ_{i,k} w'² + 1e-8)``.
    With ``up=2`` the convolution is transposed (stride 2) and followed by the FIR filter with gain 4,
    as in the paper's Appendix B.

    Computed on the activation side (:mod:`clipstyle.generator.modconv`): ``((x · s) ⊛ w) · d`` with
    ``d_{n,o} = (Σ_i s_{n,i}² Σ_k w_{o,i,k}² + 1e-8)^{-1/2}`` — the same numbers up to rounding, no
    per-sample weights, and no weight gradient when ``weight`` is frozen.

    Returns: ``[N, O, H·up, W·up]``.
    """
    out_ch, in_ch, kh, kw = weight.shape
    if up == 1:
        w = weight if flip_weight else weight.flip([2, 3])
        x = styled_conv2d(x, styles, w, padding=padding)
    else:
        fw, fh = filter_size(resample_filter)
        px0 = padding + (fw + up - 1) // 2 - (kw - 1)
        px1 = padding + (fw - up) // 2 - (kw - up)
        py0 = padding + (fh + up - 1) // 2 - (kh - 1)
        py1 = padding + (fh - up) // 2 - (kh - up)
        w = (weight.flip([2, 3]) if flip_weight else weight).transpose(0, 1)  # [I, O, k, k]
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = styled_conv2d(x, styles, w, stride=up, padding=(pyt, pxt), transposed=True)
        x = upfirdn2d(x, resample_filter, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)
    if demodulate:
        wsq = weight.square().sum(dim=[2, 3])                                     # [O, I]
        return scale_channels(x, (styles.square() @ wsq.t() + 1e-8).rsqrt(), noise)  # d: [N, O]
    return x if noise is None else x + noise


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (+ optional 2× upsampling) + noise + bias + activation + clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 use_noise: bool = True, activation: str = "lrelu", conv_clamp: float | None = None,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.resolution, self.up, self.activation = resolution, up, activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = activation_spec(activation).def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.use_noise = use_noise
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, resample_filter: torch.Tensor | None,
                noise_mode: str = "const", gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w)  # [N, I]
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=resample_filter, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv without demodulation, + bias + clamp (StyleGAN2 paper, Fig. 7 'skip')."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Plain equalized-lr convolution; used as the 1×1 upsampling skip of the 'resnet' architecture."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, up: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.up = up
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, resample_filter: torch.Tensor | None, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.weight.shape[-1] != 1:
            raise NotImplementedError("only 1x1 skip convolutions are used by the generator")
        if self.up > 1:
            x = upsample2d(x, resample_filter, up=self.up)
        x = F.conv2d(x, w)
        return bias_act(x, self.bias, gain=gain)


class SynthesisBlock(nn.Module):
    """One resolution: (const input | 2× upsampling conv) + conv + (ToRGB), per architecture."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture = cfg.architecture
        self.register_buffer("resample_filter", setup_filter(list(cfg.resample_filter)))
        kw = dict(w_dim=w_dim, resolution=resolution, use_noise=cfg.use_noise, activation=cfg.activation,
                  conv_clamp=cfg.conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if (is_last or cfg.architecture == "skip") else 0
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=cfg.conv_clamp)
        if in_channels != 0 and cfg.architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, up=2, bias=False)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        # ws: [N, num_conv + num_torgb, w_dim]
        f = self.resample_filter
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            if x.device.type == "cpu":  # NHWC from here on: oneDNN's convolutions run 1.1-2× faster in it
                x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, ws[:, 0], f, noise_mode)
        elif self.architecture == "resnet":
            y = self.skip(x, f, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[:, 0], f, noise_mode)
            x = self.conv1(x, ws[:, 1], f, noise_mode, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x, ws[:, 0], f, noise_mode)
            x = self.conv1(x, ws[:, 1], f, noise_mode)
        if img is not None:
            img = upsample2d(img, f)
        if self.num_torgb:
            y = self.torgb(x, ws[:, self.num_conv])
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` → image ``[N, img_channels, R, R]`` (float32, or the model's dtype)."""

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = 0
        for i, res in enumerate(self.block_resolutions):
            in_ch = cfg.channels[i - 1] if i > 0 else 0
            block = SynthesisBlock(in_ch, cfg.channels[i], cfg.w_dim, res, cfg.img_channels,
                                   is_last=(res == cfg.img_resolution), cfg=cfg)
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        ws = ws.to(self.b4.const.dtype)  # float32 normally; float64 when the model was .double()'d
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + block.num_torgb], noise_mode)
            w_idx += block.num_conv
        return img.contiguous()

    def row_resolutions(self) -> list[int]:
        """Resolution each ws row drives (a torgb row shared with the next conv0 counts as the next block)."""
        rows = []
        for res in self.block_resolutions:
            rows += [res] * getattr(self, f"b{res}").num_conv
        return rows + [self.img_resolution]


class StyleGAN2Generator(Generator):
    """StyleGAN2 (orig / skip / resnet). Interface: see :class:`clipstyle.generator.base.Generator`."""

    kind = "stylegan2"

    def __init__(self, cfg: StyleGAN2Config) -> None:
        super().__init__()
        self.config = cfg
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, cfg.c_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(MappingConfig(
            z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=self.num_ws, num_layers=cfg.mapping_layers,
            embed_features=cfg.mapping_embed_features, layer_features=cfg.mapping_layer_features,
            activation=cfg.mapping_activation, lr_multiplier=cfg.mapping_lr_multiplier))

    def block_resolutions(self) -> list[int]:
        return self.synthesis.row_resolutions()

    def style_sites(self) -> list:
        """StyleSpace sites in network order (:mod:`clipstyle.generator.stylespace`): per block conv0, conv1,
        torgb, each with the ``ws`` row ``SynthesisNetwork.forward`` feeds it."""
        from clipstyle.generator.stylespace import StyleSite

        sites, w_idx = [], 0
        for res in self.synthesis.block_resolutions:
            block = getattr(self.synthesis, f"b{res}")
            convs = ["conv1"] if block.in_channels == 0 else ["conv0", "conv1"]
            for j, name in enumerate(convs):
                sites.append(StyleSite(f"b{res}.{name}", getattr(block, name).affine, "conv", res, w_idx + j))
            if block.num_torgb:
                sites.append(StyleSite(f"b{res}.torgb", block.torgb.affine, "torgb", res, w_idx + block.num_conv))
            w_idx += block.num_conv
        return sites
