"""StyleGAN1 generator (Karras, Laine & Aila 2019, "A Style-Based Generator Architecture for Generative
Adversarial Networks", CVPR; arXiv:1812.04948), behind the common :class:`~clipstyle.generator.base.Generator`
interface.

What the paper (§2, Fig. 1b, Appendix C) and its published networks specify, and what is done here:

* **Mapping** f: z → w. Pixel norm of z (``z / sqrt(mean(z²) + 1e-8)``), then 8 dense layers with leaky
  ReLU (slope 0.2) after each, including the last. Equalized learning rate (Karras et al. 2018, §4.1):
  the stored weight is multiplied at run time by ``sqrt(2) / sqrt(fan_in) · lrmul`` and the bias by
  ``lrmul`` (``lrmul = 0.01``). A conditional network concatenates ``c @ E`` (``E`` = ``[c_dim, z_dim]``,
  used as stored) to z *before* the pixel norm. w is broadcast to ``num_ws = 2·log2(R) − 2`` rows.
* **Synthesis.** A learned constant ``[C, 4, 4]``; then two layers per resolution. Every layer ends with
  the *epilogue*: add per-pixel noise ``noise[H, W] · strength[C]``, add the bias, leaky ReLU 0.2,
  instance norm over H, W (no affine part), then AdaIN's style modulation ("StyleMod"):
  ``s = A(w_row)`` (dense, gain 1), ``x · (1 + s_scale) + s_shift``. The +1 is applied at run time.
* **Up-sampling** (first layer of each block above 4²): below :attr:`StyleGAN1Config.fused_min_resolution`
  nearest 2× upsampling, 3×3 conv (zero padding 1), then the [1, 2, 1]⊗[1, 2, 1]/16 blur; from that
  resolution on the *fused* up-sampling conv: the 3×3 kernel zero-padded to 5×5 and summed over its four
  one-pixel shifts into a 4×4 kernel, run as a stride-2 transposed conv (padding 1), then the blur.
  (That equals nearest upsampling and a 3×3 conv with the kernel rotated 180°.) The bias comes after
  the blur. Conv weights get the He gain ``sqrt(2) / sqrt(in · 3 · 3)``.
* **Output**: a 1×1 conv (gain ``1/sqrt(C)``) plus bias at the last resolution, no activation.
* **Truncation** (Appendix B): ``w' = w_avg + ψ (w − w_avg)`` on rows ``< truncation_cutoff``. The
  published defaults are ψ = 0.7 on the first 8 rows; they are :data:`DEFAULT_TRUNCATION_PSI` /
  :data:`DEFAULT_TRUNCATION_CUTOFF`, exposed as :attr:`StyleGAN1Generator.default_truncation` for the
  commands that want them, never applied by ``mapping`` itself.

The two formats differ in one number only: instance-norm eps is 1e-8 in the TensorFlow original and 1e-5
in lernapparat's PyTorch port; :attr:`StyleGAN1Config.instance_norm_eps` records which.

State-dict names: ``mapping.fc{i}.weight|bias`` (raw), ``mapping.label_concat`` (conditional),
``mapping.w_avg``; ``synthesis.b{res}.const`` (4² only), ``synthesis.b{res}.conv{0,1}.{weight, bias,
noise_strength, noise_const, affine.weight, affine.bias}``, ``synthesis.b{res}.blur_filter``,
``synthesis.b{R}.torgb.{weight,bias}``. Every tensor of a resolution lives under ``synthesis.b{res}.``,
so :mod:`clipstyle.generator.blend` cuts StyleGAN1 networks as it cuts StyleGAN2 ones.
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
    normalize_2nd_moment,
)

#: StyleGAN1's documented truncation defaults (G_style: truncation_psi=0.7, truncation_cutoff=8).
DEFAULT_TRUNCATION_PSI = 0.7
DEFAULT_TRUNCATION_CUTOFF = 8
_LRELU = 0.2


def nf(stage: int, fmap_base: int = 8192, fmap_decay: float = 1.0, fmap_max: int = 512) -> int:
    """StyleGAN1's channel rule: ``min(int(fmap_base / 2**(stage·fmap_decay)), fmap_max)``."""
    return min(int(fmap_base / (2.0 ** (stage * fmap_decay))), fmap_max)


def channels_for(img_resolution: int, fmap_base: int = 8192, fmap_decay: float = 1.0,
                 fmap_max: int = 512) -> tuple[int, ...]:
    """Channels of each block 4² … R²: the block at ``2**r`` has ``nf(r − 1)``."""
    return tuple(nf(r - 1, fmap_base, fmap_decay, fmap_max) for r in range(2, int(math.log2(img_resolution)) + 1))


@dataclass(frozen=True)
class StyleGAN1Config:
    """Everything that shapes a StyleGAN1 generator (JSON-serialisable; rebuilds it exactly).

    ``w_avg_origin`` / ``noise_origin`` say where ``w_avg`` and the constant noise maps came from
    (``"stored"`` when the checkpoint had them, else how they were made); ``clipstyle info`` shows them.
    """

    z_dim: int
    w_dim: int
    c_dim: int
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]  # per block, resolutions 4, 8, …, img_resolution
    mapping_layers: int = 8
    mapping_layer_features: int | None = None  # hidden width (default w_dim)
    mapping_lr_multiplier: float = 0.01
    instance_norm_eps: float = 1e-8  # TensorFlow original; lernapparat's port uses 1e-5
    fused_min_resolution: int = 128  # blocks at this resolution and above use the fused up-sampling conv
    blur_filter: tuple[float, ...] = (1.0, 2.0, 1.0)
    w_avg_origin: str = "stored"
    noise_origin: str = "stored"
    kind: str = field(default="stylegan1", init=False)

    def __post_init__(self) -> None:
        log2 = math.log2(self.img_resolution)
        if self.img_resolution < 4 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {self.img_resolution}")
        if len(self.channels) != int(log2) - 1:
            raise ValueError(f"channels must list {int(log2) - 1} blocks (4..{self.img_resolution}), got {len(self.channels)}")
        if self.mapping_layers < 1:
            raise ValueError("a StyleGAN1 mapping needs at least one layer")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**k for k in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2


class StyleGAN1Mapping(nn.Module):
    """z ``[N, z_dim]`` (+ c ``[N, c_dim]``) → ws ``[N, num_ws, w_dim]`` (all rows equal before truncation)."""

    def __init__(self, cfg: StyleGAN1Config, num_ws: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, num_ws
        hidden = cfg.w_dim if cfg.mapping_layer_features is None else cfg.mapping_layer_features
        in0 = cfg.z_dim * 2 if cfg.c_dim > 0 else cfg.z_dim  # label embedding has z_dim features
        feats = [in0] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        if cfg.c_dim > 0:
            self.label_concat = nn.Parameter(torch.randn([cfg.z_dim, cfg.c_dim]))  # [z_dim, c_dim], no gain
        for i in range(cfg.mapping_layers):
            # StyleGAN1: lrelu(x·W·√2·lrmul/√in + b·lrmul). lrelu is positively homogeneous, so this is exactly
            # √2·lrelu(x·W·lrmul/√in + b·lrmul/√2): our dense layer with its lrelu gain √2 and the bias gain
            # divided by √2 (which lets generic code, e.g. the W→Z inversion, treat it like StyleGAN2's).
            layer = FullyConnectedLayer(feats[i], feats[i + 1], activation="lrelu", lr_multiplier=cfg.mapping_lr_multiplier)
            layer.bias_gain = cfg.mapping_lr_multiplier / math.sqrt(2)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """Args: z ``[N, z_dim]``; c ``[N, c_dim]`` (conditional nets); truncation towards ``w_avg`` on rows
        ``< truncation_cutoff`` (None = all rows). Returns ws ``[N, num_ws, w_dim]``.

        Raises: ValueError for a wrong z or c shape."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping: z must be [N, {self.z_dim}], got {list(z.shape)}")
        x = z.to(self.fc0.weight.dtype)
        if self.c_dim > 0:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"mapping: c must be [N, {self.c_dim}] for this conditional network")
            x = torch.cat([x, c.to(x.dtype) @ self.label_concat.to(x.dtype).t()], dim=1)
        x = normalize_2nd_moment(x)
        for i in range(self.cfg.mapping_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            w_avg = self.w_avg.to(ws.dtype)
            cut = self.num_ws if truncation_cutoff is None else max(0, int(truncation_cutoff))
            ws = ws.clone()
            ws[:, :cut] = w_avg.lerp(ws[:, :cut], truncation_psi)
        return ws


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise ``kernel [k, k]`` (normalised) with zero padding ``k // 2``; ``[N, C, H, W]`` → same."""
    c = x.shape[1]
    k = kernel.to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, padding=kernel.shape[-1] // 2, groups=c)


class StyleGAN1Layer(nn.Module):
    """One synthesis layer: (const | 3×3 conv | up-sampling 3×3 conv) + the epilogue of the module docstring.

    ``mode``: ``"const"`` (no conv: the block's constant goes straight into the epilogue), ``"conv"``,
    ``"up"`` (nearest 2× + conv + blur) or ``"fused"`` (stride-2 transposed conv + blur).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, mode: str,
                 eps: float) -> None:
        super().__init__()
        self.mode, self.resolution, self.eps = mode, resolution, eps
        if mode != "const":
            self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
            self.weight_gain = math.sqrt(2) / math.sqrt(in_channels * 9)
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.noise_strength = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.affine = FullyConnectedLayer(w_dim, 2 * out_channels)  # StyleMod, gain 1/sqrt(w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor, blur: torch.Tensor | None, noise_mode: str) -> torch.Tensor:
        # x [N, I, H, W], w [N, w_dim] → [N, O, res, res]
        if self.mode != "const":
            weight = self.weight.to(x.dtype) * self.weight_gain
            if self.mode == "conv":
                x = F.conv2d(x, weight, padding=1)
            elif self.mode == "up":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                x = _blur(F.conv2d(x, weight, padding=1), blur)
            else:  # fused: 3×3 → 5×5 → sum of the four shifts = 4×4, transposed conv with stride 2
                wp = F.pad(weight, [1, 1, 1, 1])
                w4 = wp[:, :, 1:, 1:] + wp[:, :, :-1, 1:] + wp[:, :, 1:, :-1] + wp[:, :, :-1, :-1]
                x = F.conv_transpose2d(x, w4.transpose(0, 1), stride=2, padding=1)
                x = _blur(x, blur)
        n, ch = x.shape[0], x.shape[1]
        if noise_mode == "const":
            x = x + self.noise_const.to(x.dtype)[None, None] * self.noise_strength.to(x.dtype).reshape(1, ch, 1, 1)
        elif noise_mode == "random":
            noise = torch.randn([n, 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype).reshape(1, ch, 1, 1)
        x = F.leaky_relu(x + self.bias.to(x.dtype).reshape(1, ch, 1, 1), _LRELU)
        x = x - x.mean(dim=[2, 3], keepdim=True)
        x = x * (x.square().mean(dim=[2, 3], keepdim=True) + self.eps).rsqrt()
        style = self.affine(w.to(x.dtype)).reshape(n, 2, ch, 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]


class StyleGAN1Block(nn.Module):
    """One resolution: two layers (and the output 1×1 conv at the last one)."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, is_last: bool, cfg: StyleGAN1Config) -> None:
        super().__init__()
        self.resolution, self.is_last = resolution, is_last
        taps = torch.tensor(cfg.blur_filter, dtype=torch.float32)
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("blur_filter", kernel / kernel.sum())
        eps = cfg.instance_norm_eps
        if resolution == 4:
            self.const = nn.Parameter(torch.ones([out_channels, 4, 4]))
            self.conv0 = StyleGAN1Layer(out_channels, out_channels, cfg.w_dim, 4, "const", eps)
        else:
            mode = "fused" if 0 < cfg.fused_min_resolution <= resolution else "up"
            self.conv0 = StyleGAN1Layer(in_channels, out_channels, cfg.w_dim, resolution, mode, eps)
        self.conv1 = StyleGAN1Layer(out_channels, out_channels, cfg.w_dim, resolution, "conv", eps)
        if is_last:
            self.torgb = nn.Conv2d(out_channels, cfg.img_channels, 1)
            self.torgb_gain = 1 / math.sqrt(out_channels)

    def forward(self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        # ws: [N, 2, w_dim]
        if x is None:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        x = self.conv0(x, ws[:, 0], self.blur_filter, noise_mode)
        return self.conv1(x, ws[:, 1], self.blur_filter, noise_mode)

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.torgb.weight.to(x.dtype) * self.torgb_gain, self.torgb.bias.to(x.dtype))


class StyleGAN1Synthesis(nn.Module):
    """ws ``[N, num_ws, w_dim]`` → image ``[N, img_channels, R, R]`` float32 (float64 if the model is)."""

    def __init__(self, cfg: StyleGAN1Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.block_resolutions = cfg.block_resolutions
        self.num_ws = cfg.num_ws
        for i, res in enumerate(self.block_resolutions):
            in_ch = cfg.channels[i - 1] if i > 0 else cfg.channels[0]
            setattr(self, f"b{res}", StyleGAN1Block(in_ch, cfg.channels[i], res, res == cfg.img_resolution, cfg))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", return_blocks: bool = False):
        """``noise_mode``: ``const`` (the stored/seeded maps), ``random`` (fresh per call and sample) or ``none``.
        With ``return_blocks`` also returns ``{res: activation [N, C, res, res]}`` (for debugging/parity)."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] for this network, got {list(ws.shape)}")
        ws = ws.to(self.b4.const.dtype)
        x = None
        acts = {}
        for i, res in enumerate(self.block_resolutions):
            block = getattr(self, f"b{res}")
            x = block(x, ws[:, 2 * i: 2 * i + 2], noise_mode)
            acts[res] = x
        img = getattr(self, f"b{self.img_resolution}").to_rgb(x)
        return (img, acts) if return_blocks else img

    def row_resolutions(self) -> list[int]:
        return [res for res in self.block_resolutions for _ in range(2)]


class StyleGAN1Generator(Generator):
    """StyleGAN1 (Karras et al. 2019). Interface: see :class:`clipstyle.generator.base.Generator`.

    ``default_truncation`` = ``(0.7, 8)``: StyleGAN1's documented ψ and cutoff, for commands that apply
    them to these networks (and say so); ``mapping`` never applies them by itself.
    """

    kind = "stylegan1"
    default_truncation = (DEFAULT_TRUNCATION_PSI, DEFAULT_TRUNCATION_CUTOFF)

    def __init__(self, cfg: StyleGAN1Config) -> None:
        super().__init__()
        self.config = cfg
        self.z_dim, self.w_dim, self.c_dim = cfg.z_dim, cfg.w_dim, cfg.c_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = StyleGAN1Synthesis(cfg)
        self.num_ws = cfg.num_ws
        self.mapping = StyleGAN1Mapping(cfg, self.num_ws)

    def block_resolutions(self) -> list[int]:
        return self.synthesis.row_resolutions()

    def style_sites(self) -> list:
        """StyleSpace sites (:mod:`clipstyle.generator.stylespace`): the AdaIN affine of every layer, output
        ``[scale (C) | bias (C)]``; StyleGAN1's toRGB is an unmodulated 1×1 conv, so it has none."""
        from clipstyle.generator.stylespace import StyleSite

        sites = []
        for i, res in enumerate(self.synthesis.block_resolutions):
            block = getattr(self.synthesis, f"b{res}")
            for j, name in enumerate(("conv0", "conv1")):
                sites.append(StyleSite(f"b{res}.{name}", getattr(block, name).affine, "conv", res, 2 * i + j, adain=True))
        return sites

    def describe(self) -> dict:
        d = super().describe()
        d.update(instance_norm_eps=self.config.instance_norm_eps, w_avg_origin=self.config.w_avg_origin,
                 noise_origin=self.config.noise_origin,
                 fused_upsampling=[r for r in self.config.block_resolutions
                                   if r > 4 and 0 < self.config.fused_min_resolution <= r],
                 default_truncation={"psi": DEFAULT_TRUNCATION_PSI, "cutoff": DEFAULT_TRUNCATION_CUTOFF})
        return d


def resolve_truncation(G: Generator, psi: float | None, cutoff: int | None) -> tuple[float, int | None, str | None]:
    """``--truncation`` / ``--truncation-cutoff`` for ``G``: unset options take the network's documented
    defaults (StyleGAN1: psi 0.7 on rows 0-7, ``G.default_truncation``), else psi 1 and all rows.
    Returns ``(psi, cutoff, note or None)``; the note says when a StyleGAN1 default was used (commands print it).
    For every other family the defaults are psi 1 and all rows: nothing is applied silently."""
    default = getattr(G, "default_truncation", None)
    if default is None:
        return (1.0 if psi is None else psi), cutoff, None
    used = []
    if psi is None:
        psi = default[0]
        used.append(f"psi {psi}")
    if cutoff is None:
        cutoff = default[1]
        if psi != 1:  # with psi 1 the cutoff changes nothing: not worth a note
            used.append(f"rows 0-{cutoff - 1}")
    note = f"StyleGAN1 network: using its documented default truncation ({', '.join(used)})" if used else None
    return psi, cutoff, note


@torch.no_grad()
def mean_w(G: Generator, samples: int = 10_000, seed: int = 0, c: torch.Tensor | None = None,
           batch: int = 2500) -> torch.Tensor:
    """Mean of ``G.mapping(z, c)[:, 0]`` over ``samples`` z ~ N(0, I) drawn on CPU from
    ``torch.Generator().manual_seed(seed)``, accumulated in float64 → float32 ``[w_dim]``.

    ``c``: ``[1, c_dim]`` (or ``[c_dim]``) label shared by every sample (conditional nets; the mean w of
    that label), else None. The global RNG is untouched.
    """
    gen = torch.Generator().manual_seed(seed)
    device = G.w_avg.device
    if c is not None:
        c = c.reshape(1, -1).to(device, torch.float32)
    total = torch.zeros([G.w_dim], dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        cc = c.expand(n, -1) if c is not None else torch.zeros([n, G.c_dim], device=device)
        total += G.mapping(z, cc)[:, 0].to("cpu", torch.float64).sum(dim=0)
        done += n
    return (total / max(samples, 1)).to(torch.float32)
