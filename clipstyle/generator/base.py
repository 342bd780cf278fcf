"""The one ``Generator`` interface every StyleGAN family implements, and its shared mapping network."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from clipstyle.kernels import bias_act

NOISE_MODES = ("const", "random", "none")
GROUPS = ("coarse", "middle", "fine")


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x², dim) + eps)``: StyleGAN's pixel norm of z (Karras et al. 2019, eq. in §2)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def group_of_resolution(res: int) -> str:
    """Styleblock group of a ``ws`` row from its resolution: coarse 4²–8², middle 16²–32², fine 64²+."""
    if res <= 8:
        return "coarse"
    if res <= 32:
        return "middle"
    return "fine"


@dataclass(frozen=True)
class SourceInfo:
    """Where a generator came from: the user's source string, the resolved file and its format."""

    source: str = ""
    path: str = ""
    format: str = ""


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate (Karras et al. 2018, §4.1).

    Stored ``weight [out, in]`` / ``bias [out]`` are raw; the effective ones are
    ``weight · lr_multiplier / sqrt(in)`` and ``bias · lr_multiplier``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)


@dataclass(frozen=True)
class MappingConfig:
    """Mapping network z (+ c) → w: ``num_layers`` dense layers (Karras et al. 2019, §2)."""

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int
    num_layers: int = 8
    embed_features: int | None = None  # label embedding width (default w_dim; 0 when c_dim == 0)
    layer_features: int | None = None  # hidden width (default w_dim)
    activation: str = "lrelu"
    lr_multiplier: float = 0.01
    normalize_embed: bool = True


class MappingNetwork(nn.Module):
    """z ``[N, z_dim]``, c ``[N, c_dim]`` → ws ``[N, num_ws, w_dim]`` (all rows equal before truncation)."""

    def __init__(self, cfg: MappingConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.num_ws
        embed = cfg.w_dim if cfg.embed_features is None else cfg.embed_features
        embed = embed if cfg.c_dim > 0 else 0
        hidden = cfg.w_dim if cfg.layer_features is None else cfg.layer_features
        feats = [cfg.z_dim + embed] + [hidden] * (cfg.num_layers - 1) + [cfg.w_dim]
        self.embed = FullyConnectedLayer(cfg.c_dim, embed) if cfg.c_dim > 0 else None
        for i in range(cfg.num_layers):
            layer = FullyConnectedLayer(feats[i], feats[i + 1], activation=cfg.activation, lr_multiplier=cfg.lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        x = normalize_2nd_moment(z) if self.z_dim > 0 else None
        if self.c_dim > 0:
            if c is None or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"mapping: c must be [N, {self.c_dim}] for this conditional network")
            y = self.embed(c.to(z.dtype))
            if self.cfg.normalize_embed:
                y = normalize_2nd_moment(y)
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.cfg.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            w_avg = self.w_avg.to(ws.dtype)
            if truncation_cutoff is None:
                ws = w_avg.lerp(ws, truncation_psi)
            else:
                ws = ws.clone()
                ws[:, :truncation_cutoff] = w_avg.lerp(ws[:, :truncation_cutoff], truncation_psi)
        return ws


class Generator(nn.Module):
    """Base of the StyleGAN2 and StyleGAN3 generators.

    Attributes: ``z_dim``, ``w_dim``, ``c_dim``, ``num_ws``, ``img_resolution``, ``img_channels``,
    ``kind`` (``'stylegan2'`` | ``'stylegan3'``), ``config`` (a frozen dataclass that rebuilds the
    network), ``mapping`` and ``synthesis`` sub-modules, ``source`` (:class:`SourceInfo`).
    """

    kind: str = ""
    config: Any
    mapping: MappingNetwork
    synthesis: nn.Module

    def __init__(self) -> None:
        super().__init__()
        self.source = SourceInfo()

    # -- the interface of DESIGN.md --
    @property
    def w_avg(self) -> torch.Tensor:
        """Mean of w, ``[w_dim]`` float32 (the truncation centre)."""
        return self.mapping.w_avg

    def block_resolutions(self) -> list[int]:
        """Resolution of the layer(s) each ``ws`` row drives, ``len == num_ws``."""
        raise NotImplementedError

    def block_groups(self) -> list[str]:
        """``coarse`` / ``middle`` / ``fine`` for each ``ws`` row."""
        return [group_of_resolution(r) for r in self.block_resolutions()]

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        """z ``[N, z_dim]`` (+ c ``[N, c_dim]``) → image ``[N, C, H, W]`` float32, nominally in [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def check_ws(self, ws: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``ws`` is ``[N, num_ws, w_dim]``."""
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] for this network, got {list(ws.shape)}")

    # -- StyleSpace (clipstyle.generator.stylespace) --
    def style_sites(self) -> list:
        """StyleSpace sites of this family, in network order (each family implements it)."""
        raise NotImplementedError

    def styles(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """StyleSpace S of ``ws`` ``[N, num_ws, w_dim]``: ``{layer: [N, width]}`` in network order
        (:func:`clipstyle.generator.stylespace.compute_styles`)."""
        from clipstyle.generator.stylespace import compute_styles

        return compute_styles(self, ws)

    def style_layers(self, include_torgb: bool = True) -> tuple:
        """The layers of S with their offsets in the flat ``[N, C]`` view
        (:func:`clipstyle.generator.stylespace.style_layers`)."""
        from clipstyle.generator.stylespace import style_layers

        return style_layers(self, include_torgb)

    def synthesis_styles(self, ws: torch.Tensor, styles: dict[str, torch.Tensor],
                         noise_mode: str = "const") -> torch.Tensor:
        """Render with the affine outputs replaced by ``styles``; bit-identical to ``synthesis(ws)`` when
        ``styles == styles(ws)`` (:func:`clipstyle.generator.stylespace.render_styles`)."""
        from clipstyle.generator.stylespace import render_styles

        return render_styles(self, ws, styles, noise_mode)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (for ``clipstyle info`` and ``run.json``)."""
        return {
            "kind": self.kind, "img_resolution": self.img_resolution, "img_channels": self.img_channels,
            "z_dim": self.z_dim, "w_dim": self.w_dim, "c_dim": self.c_dim, "num_ws": self.num_ws,
            "num_params": self.num_params(), "source": self.source.source, "path": self.source.path,
            "format": self.source.format,
        }
