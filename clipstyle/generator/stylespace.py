"""StyleSpace S: every affine output that modulates a convolution or a toRGB layer (Wu, Lischinski and
Shechtman 2021, "StyleSpace Analysis: Disentangled Controls for StyleGAN Image Generation", §3).

In StyleGAN2/3 each synthesis layer owns an affine map ``A(w)`` (a dense layer) whose output ``s`` scales the
input channels of its modulated convolution; StyleSpace is the concatenation of all those ``s``. In StyleGAN1
the affine ("StyleMod", Karras et al. 2019, §2) gives an AdaIN scale ``y_s`` and bias ``y_b`` per output channel;
both halves are S channels here (``part`` ``scale``/``bias``).

A value of S is the *raw affine output* (for StyleGAN2 toRGB and StyleGAN3 layers before the constant weight
gain the layer multiplies in afterwards; StyleGAN1 scales before the ``+ 1``): the convention of the original
TensorFlow code on which the published StyleSpace statistics were computed.

Rendering from styles replaces each affine's output by the given tensor (a forward hook scoped to the calling
thread and to a ``with`` block), so every other operation of the synthesis network runs unchanged and an
unmodified S renders bit-identically to ``G.synthesis(ws)``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "StyleChannel",
    "StyleLayer",
    "StyleSite",
    "channel_table",
    "compute_styles",
    "flatten_styles",
    "num_channels",
    "override_styles",
    "render_styles",
    "style_layers",
    "unflatten_styles",
]

KINDS = ("conv", "torgb")


@dataclass(frozen=True)
class StyleSite:
    """Where a family's generator keeps one style: ``affine`` module, the ``ws`` row feeding it, its kind."""

    name: str
    affine: nn.Module
    kind: str  # conv | torgb
    resolution: int
    ws_index: int
    adain: bool = False  # StyleGAN1: the output is [scale (C) | bias (C)]


@dataclass(frozen=True)
class StyleLayer:
    """One entry of S: ``width`` channels at ``offset`` of the flat ``[N, C]`` view.

    Attributes: name (module path of the layer inside ``G.synthesis``, e.g. ``b64.conv0``), kind (``conv`` or
    ``torgb``), resolution (of the ``ws`` row feeding it: :meth:`Generator.block_resolutions`), ws_index,
    width, offset, adain (StyleGAN1: first half AdaIN scales, second half biases).
    """

    name: str
    kind: str
    resolution: int
    ws_index: int
    width: int
    offset: int
    adain: bool = False


@dataclass(frozen=True)
class StyleChannel:
    """One S channel: flat index, layer name, kind (conv/torgb), part (mod | scale | bias), resolution and
    the index inside its layer's part."""

    flat: int
    layer: str
    kind: str
    part: str
    resolution: int
    index: int


def style_layers(G: nn.Module, include_torgb: bool = True) -> tuple[StyleLayer, ...]:
    """The layers of S in network order (the order of the flat view).

    Offsets count only the layers returned, so ``include_torgb=False`` gives the conv-only layout (StyleCLIP's
    6048 channels of an FFHQ-1024 StyleGAN2).
    """
    out, offset = [], 0
    for site in G.style_sites():
        if site.kind not in KINDS:
            raise AssertionError(f"style site {site.name} has kind {site.kind!r}")
        if site.kind == "torgb" and not include_torgb:
            continue
        width = int(site.affine.out_features)
        out.append(StyleLayer(site.name, site.kind, int(site.resolution), int(site.ws_index), width, offset,
                              site.adain))
        offset += width
    return tuple(out)


def num_channels(G: nn.Module, include_torgb: bool = True) -> int:
    """Number of S channels (9088 for FFHQ-1024 StyleGAN2 with toRGB, 6048 without)."""
    return sum(layer.width for layer in style_layers(G, include_torgb))


def channel_table(G: nn.Module, include_torgb: bool = True) -> tuple[StyleChannel, ...]:
    """One :class:`StyleChannel` per flat S channel, in flat order."""
    rows = []
    for layer in style_layers(G, include_torgb):
        half = layer.width // 2
        for i in range(layer.width):
            if layer.adain:
                part, idx = ("scale", i) if i < half else ("bias", i - half)
            else:
                part, idx = "mod", i
            rows.append(StyleChannel(layer.offset + i, layer.name, layer.kind, part, layer.resolution, idx))
    return tuple(rows)


def compute_styles(G: nn.Module, ws: torch.Tensor) -> dict[str, torch.Tensor]:
    """S of ``ws``: ``{layer name: [N, width]}`` in network order, every layer (conv and toRGB).

    Args:
        ws: ``[N, num_ws, w_dim]`` (any float dtype; converted to the synthesis parameters' dtype as
            ``G.synthesis`` does).

    Returns:
        Ordered dict of tensors in the parameters' dtype, with gradient when ``ws`` has one.

    Raises:
        ValueError: ``ws`` of the wrong shape.
    """
    G.check_ws(ws)
    sites = G.style_sites()
    dtype = sites[0].affine.weight.dtype
    ws = ws.to(dtype)
    # the same strided row views G.synthesis passes to the affines, so the products are bit-identical
    return {s.name: s.affine(ws[:, s.ws_index]) for s in sites}


def flatten_styles(styles: Mapping[str, torch.Tensor], layers: tuple[StyleLayer, ...]) -> torch.Tensor:
    """``{name: [N, width]}`` → ``[N, C]`` in the order of ``layers`` (layers not listed are left out)."""
    return torch.cat([styles[layer.name] for layer in layers], dim=1)


def unflatten_styles(flat: torch.Tensor, layers: tuple[StyleLayer, ...],
                     base: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten_styles`: ``[N, C]`` → ``{name: [N, width]}`` (views of ``flat``).

    With ``base`` (a full styles dict) the layers missing from ``layers`` (e.g. toRGB in the conv-only layout)
    are taken from it, so the result renders.

    Raises:
        ValueError: ``flat`` is not ``[N, sum of widths]``.
    """
    total = sum(layer.width for layer in layers)
    if flat.ndim != 2 or flat.shape[1] != total:
        raise ValueError(f"flat styles must be [N, {total}], got {list(flat.shape)}")
    out = dict(base) if base is not None else {}
    for layer in layers:
        out[layer.name] = flat[:, layer.offset:layer.offset + layer.width]
    return out


@contextlib.contextmanager
def override_styles(G: nn.Module, styles: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Within the block, every affine of ``G.synthesis`` named in ``styles`` outputs the given tensor instead of
    ``A(w)`` — on the calling thread only (other threads rendering with ``G`` meanwhile are unaffected).

    Raises:
        KeyError: a name that is not a style layer of ``G``.
    """
    sites = {s.name: s for s in G.style_sites()}
    unknown = [k for k in styles if k not in sites]
    if unknown:
        raise KeyError(f"not style layers of this network: {unknown[:5]}")
    me = threading.get_ident()
    handles = []

    def make_hook(value: torch.Tensor):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor):
            if threading.get_ident() != me:
                return None
            if value.shape != output.shape:
                raise ValueError(f"styles {list(value.shape)} do not fit the layer's output {list(output.shape)}")
            return value if value.dtype == output.dtype else value.to(output.dtype)
        return hook

    try:
        for name, value in styles.items():
            handles.append(sites[name].affine.register_forward_hook(make_hook(value)))
        yield
    finally:
        for h in handles:
            h.remove()


def render_styles(G: nn.Module, ws: torch.Tensor, styles: Mapping[str, torch.Tensor],
                  noise_mode: str = "const") -> torch.Tensor:
    """``G.synthesis(ws)`` with the affine outputs replaced by ``styles`` → ``[N, C, H, W]``.

    ``ws`` ``[N, num_ws, w_dim]`` still drives what is not a style (StyleGAN3's input transform); layers not in
    ``styles`` use ``A(w)``. ``render_styles(G, ws, compute_styles(G, ws))`` equals ``G.synthesis(ws)`` bit for bit.
    """
    with override_styles(G, styles):
        return G.synthesis(ws, noise_mode=noise_mode)
