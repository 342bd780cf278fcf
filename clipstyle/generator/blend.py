"""Network blending ("layer swapping"): low-resolution synthesis layers from one generator, the rest
from another.

Pinkney & Adler 2020, "Resolution Dependent GAN Interpolation for Controllable Image Synthesis
Between Domains" (arXiv:2010.05334): two generators that share an ancestry (e.g. FFHQ and a model
fine-tuned from it on cartoons) are combined by taking the synthesis layers up to a resolution
``r`` from one and the layers above ``r`` from the other. Coarse structure (pose, face shape) then
follows the first network, textures and colours the second — the "toonify" effect.

Definitions used here (the ``at`` resolution ``r`` must be a power of two):

* **Resolution of a layer.** StyleGAN2: every tensor of block ``synthesis.b{res}`` (its const input,
  ``conv0``, ``conv1``, ``torgb``, the resnet ``skip``, noise buffers, filters) has resolution
  ``res``; so the toRGB layer of block ``r`` goes with block ``r``. StyleGAN3: every tensor of layer
  ``synthesis.L{i}_{size}_{ch}`` has that layer's *output sampling rate* (``out_sampling_rate`` of
  the module or its ``cfg``, else ``G.block_resolutions()[i + 1]``, the row that drives it);
  ``synthesis.input`` (the Fourier-feature input) counts as resolution 4, the lowest resolution of
  the hierarchy — i.e. below every layer, like StyleGAN2's ``b4``. Any other synthesis tensor (none
  in the current networks) is taken from A.
* **Hard cut** (``smooth`` None or 0): weight of A ``α = 1`` for ``res <= r``, else ``α = 0``.
* **Smooth** (``smooth = s > 0`` octaves): ``α = 1`` for ``res <= r`` and
  ``α = clamp(1 − log2(res / r) / (1 + s), 0, 1)`` above; every floating tensor becomes
  ``α·A + (1 − α)·B``. Layers at ``r`` and below are always exactly A's, B is reached fully at
  ``r·2^(1+s)``: ``s = 1`` puts one half-and-half octave between them (``s → 0`` is the hard cut).
  Tensors with ``α`` exactly 1 or 0 are copied bit-exactly; non-floating tensors come from whichever
  side has the larger weight.
* The mapping network and ``w_avg`` always come from A, so seeds and latent files of A keep working.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from typing import Any

import torch

from clipstyle.generator.base import Generator, SourceInfo
from clipstyle.generator.formats.common import CheckpointError
from clipstyle.errors import UsageError

__all__ = ["blend_generators", "blend_weights", "synthesis_resolutions", "check_blendable", "INPUT_RESOLUTION"]

#: Resolution assigned to StyleGAN3's ``synthesis.input`` (the lowest of the hierarchy).
INPUT_RESOLUTION = 4

# Config fields that only shape the mapping network (taken from A anyway) or record nothing about
# the weights' layout; every other field must match between A and B.
_IGNORED_FIELDS = ("z_dim", "c_dim", "num_fp16_res", "kind",
                  "instance_norm_eps", "w_avg_origin", "noise_origin")  # StyleGAN1: A's numerics, provenance only

_SG2_KEY = re.compile(r"^synthesis\.b(\d+)\.")
_SG3_LAYER_KEY = re.compile(r"^synthesis\.(L(\d+)_\d+_\d+)\.")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def _layer_rate(G: Generator, name: str, index: int) -> float:
    module = getattr(G.synthesis, name, None)
    for holder in (module, getattr(module, "cfg", None)):
        value = getattr(holder, "out_sampling_rate", None)
        if value is not None:
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    rows = G.block_resolutions()
    if index + 1 < len(rows):
        return float(rows[index + 1])
    raise CheckpointError(f"cannot tell the resolution of synthesis layer {name}")


def synthesis_resolutions(G: Generator) -> dict[str, float | None]:
    """Resolution of every ``synthesis.*`` entry of ``G.state_dict()`` (see the module docstring).

    Returns:
        ``{state-dict key: resolution in pixels}``; ``None`` for synthesis tensors that belong to no
        layer (taken from A when blending).
    """
    out: dict[str, float | None] = {}
    rates: dict[str, float] = {}
    for key in G.state_dict():
        if not key.startswith("synthesis."):
            continue
        m = _SG2_KEY.match(key)
        if m:
            out[key] = float(m.group(1))
            continue
        if key.startswith("synthesis.input."):
            out[key] = float(INPUT_RESOLUTION)
            continue
        m = _SG3_LAYER_KEY.match(key)
        if m:
            name = m.group(1)
            if name not in rates:
                rates[name] = _layer_rate(G, name, int(m.group(2)))
            out[key] = rates[name]
            continue
        out[key] = None
    return out


def check_cut(G: Generator, at: int, option: str = "--at") -> None:
    """A user's cut must take something from the second network: ``at`` below ``G.img_resolution``.

    (:func:`blend_generators` itself accepts any cut; a cut at the top resolution is all of A.)

    Raises:
        UsageError: ``at >= G.img_resolution``, naming the resolutions that would blend.
    """
    top = int(G.img_resolution)
    if at >= top:
        choices = ", ".join(str(2 ** k) for k in range(2, top.bit_length() - 1))
        raise UsageError(f"{option} {at} is not below the network's resolution {top}: nothing would come from the "
                         f"second network; choose one of {choices}")


def blend_weights(resolutions: dict[str, float | None], at: int, smooth: float | None = None) -> dict[str, float]:
    """Weight of network A for every synthesis tensor (1 = A's tensor, 0 = B's).

    Args:
        resolutions: from :func:`synthesis_resolutions`.
        at: the cut resolution ``r`` (power of two >= 1).
        smooth: ``None``/0 for a hard cut, else the ramp length ``s`` (octaves) of the module docstring.

    Raises:
        ValueError: ``at`` not a power of two, or ``smooth`` negative or not finite.
    """
    if not isinstance(at, int) or not _is_power_of_two(at):
        raise UsageError(f"the blend resolution must be a power of two (4, 8, 16, …), got {at}")
    if smooth is not None and (not math.isfinite(smooth) or smooth < 0):
        raise UsageError(f"the blend smoothness must be >= 0 octaves, got {smooth}")
    weights: dict[str, float] = {}
    for key, res in resolutions.items():
        if res is None or res <= at:
            weights[key] = 1.0
        elif not smooth:
            weights[key] = 0.0
        else:
            weights[key] = min(1.0, max(0.0, 1.0 - math.log2(res / at) / (1.0 + smooth)))
    return weights


def _config_dict(G: Generator) -> dict[str, Any]:
    cfg = getattr(G, "config", None)
    if not dataclasses.is_dataclass(cfg):
        raise CheckpointError(f"{type(G).__name__} has no dataclass config; cannot blend it")
    return dataclasses.asdict(cfg)


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_blendable(A: Generator, B: Generator) -> None:
    """Raise unless A and B have the same synthesis architecture (weights may differ).

    Compared: the family (``kind``), every config field except the mapping network's and
    ``z_dim``/``c_dim``/``num_fp16_res``, ``w_dim``, ``num_ws``, and the names and shapes of every
    synthesis tensor.

    Raises:
        CheckpointError: one line naming the first difference.
    """
    if A.kind != B.kind:
        raise CheckpointError(f"cannot blend a {A.kind or type(A).__name__} network with a "
                              f"{B.kind or type(B).__name__} network: both must be the same family")
    ca, cb = _config_dict(A), _config_dict(B)
    for name in sorted(set(ca) | set(cb)):
        if name.startswith("mapping") or name in _IGNORED_FIELDS:
            continue
        va, vb = ca.get(name, "<absent>"), cb.get(name, "<absent>")
        if va != vb:
            raise CheckpointError(f"cannot blend: the networks differ in {name} (A: {_short(va)}, B: {_short(vb)})")
    for name in ("w_dim", "num_ws", "img_resolution", "img_channels"):
        if getattr(A, name) != getattr(B, name):
            raise CheckpointError(f"cannot blend: the networks differ in {name} "
                                  f"(A: {getattr(A, name)}, B: {getattr(B, name)})")
    sa = {k: tuple(v.shape) for k, v in A.state_dict().items() if k.startswith("synthesis.")}
    sb = {k: tuple(v.shape) for k, v in B.state_dict().items() if k.startswith("synthesis.")}
    only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
    if only_a or only_b:
        which = f"{only_a[0]} only in A" if only_a else f"{only_b[0]} only in B"
        raise CheckpointError(f"cannot blend: the synthesis networks have different layers ({which})")
    for k in sorted(sa):
        if sa[k] != sb[k]:
            raise CheckpointError(f"cannot blend: {k} has shape {list(sa[k])} in A but {list(sb[k])} in B")


def blend_generators(G_a: Generator, G_b: Generator, at: int, smooth: float | None = None) -> Generator:
    """A new generator: synthesis layers at resolution <= ``at`` from ``G_a``, the rest from ``G_b``.

    See the module docstring for how layers get their resolution and for the ``smooth`` ramp
    (``α = clamp(1 − log2(res/at)/(1 + smooth), 0, 1)`` above ``at``). Mapping network and
    ``w_avg`` come from ``G_a``. Works for StyleGAN2 (per block ``b{res}``) and StyleGAN3 (per
    layer, by output sampling rate; the input layer counts as resolution 4).

    Args:
        G_a: the network providing low resolutions, mapping and ``w_avg``.
        G_b: the network providing high resolutions; same architecture.
        at: power of two; ``at >= img_resolution`` gives a copy of A, ``at < 4`` a copy of B's
            synthesis (with A's mapping).
        smooth: ``None``/0 (hard cut) or the ramp length in octaves (>= 0).

    Returns:
        A deep copy of ``G_a`` (same device, eval mode, frozen) carrying the blended weights;
        ``G_a`` and ``G_b`` are not modified. ``source.format`` is ``"blend"``.

    Raises:
        CheckpointError: the architectures differ (one line naming the difference).
        ValueError: bad ``at`` or ``smooth``.
    """
    check_blendable(G_a, G_b)
    weights = blend_weights(synthesis_resolutions(G_a), at, smooth)
    G = copy.deepcopy(G_a)
    state_b = G_b.state_dict()
    own = dict(G.named_parameters())
    own.update(dict(G.named_buffers()))
    with torch.no_grad():
        for key, alpha in weights.items():
            if alpha == 1.0:
                continue
            dst = own.get(key)
            if dst is None:  # a state entry that is neither parameter nor buffer: not expected
                raise CheckpointError(f"cannot blend: {key} is not a tensor of the network")
            src = state_b[key].to(dst.device)
            if alpha == 0.0 or (not dst.is_floating_point() and alpha < 0.5):
                dst.copy_(src)  # bit-exact copy of B's tensor
            elif dst.is_floating_point():
                dst.copy_(torch.lerp(src.to(dst.dtype), dst, alpha))  # α·A + (1 − α)·B
    G.eval().requires_grad_(False)
    from clipstyle.generator.formats.writers import public_source  # no absolute paths in written metadata

    desc = f"blend({public_source(G_a.source.source) or 'A'}, {public_source(G_b.source.source) or 'B'}, at={at}" + \
        (f", smooth={smooth})" if smooth else ")")
    G.source = SourceInfo(desc, G_a.source.path, "blend")
    return G
