"""The CLIP critics of generator adaptation (Gal et al. 2022, "StyleGAN-NADA", arXiv:2108.00946).

Directional loss (Eq. 3–4), for the images of one latent batch ``w`` through the frozen generator (``x0 = G_frozen(w)``)
and through the trained copy (``x = G_train(w)``), per CLIP model ``m``:

    ΔT_m = E_T^m(t_target) − E_T^m(t_source)                                                     (Eq. 3)
    ΔI_m = E_I^m(x) − E_I^m(x0)
    L_m  = mean_{n,k} (1 − ΔI_m·ΔT̂_m / max(‖ΔI_m‖, τ))                                            (Eq. 4)
    L    = Σ_m λ_m L_m / Σ_m λ_m

(``k`` over matched cutouts of x and x0 when cutouts are asked for, the whole image otherwise; τ keeps the
cosine defined at the start, where x = x0; text embeddings are prompt-template ensembles). With style images
instead of a target text, ``ΔT_m`` is the unit difference of the mean embedding of the style images and the mean
embedding of frozen-generator samples.

Global loss (Eq. 1–2), used by the adaptive layer selection (Sec. 4.2): ``Σ_m λ_m mean_n(1 − cos(E_I^m(x), T_m)) /
Σ_m λ_m`` with ``T_m`` the target text's (or the style images' mean) unit embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from clipstyle.guidance import CutoutConfig, Cutouts, GuidanceError

__all__ = ["AdaptLoss", "Critic", "image_critic", "text_critic"]


@dataclass(frozen=True)
class Critic:
    """One CLIP model's view of the adaptation.

    Attributes:
        guide: a :class:`~clipstyle.guidance.CLIPGuide`.
        weight: λ_m (> 0).
        direction: ΔT̂_m, unit float32 ``[D]`` on the guide's device.
        target: T_m, unit float32 ``[D]`` (for the global loss).
    """

    guide: Any
    weight: float
    direction: Tensor
    target: Tensor


def text_critic(guide: Any, weight: float, source: str, target: str, templates: Sequence[str] | None) -> Critic:
    """A :class:`Critic` from two texts (template-ensembled embeddings, Radford et al. 2021, §3.1.4).

    Raises:
        DirectionError: the two texts give the same embedding.
    """
    from clipstyle.latents.directions import text_delta, text_embedding

    return Critic(guide, float(weight), text_delta(guide, source, target, templates),
                  text_embedding(guide, target, templates))


@torch.no_grad()
def image_critic(guide: Any, weight: float, style: Tensor, source_images: Tensor) -> Critic:
    """A :class:`Critic` from style images: ``ΔT = unit(mean E_I(style) − mean E_I(source_images))``.

    Args:
        style: float32 ``[J, 3, H, W]`` in [-1, 1]. source_images: frozen-generator samples ``[M, 3, H', W']``.

    Raises:
        GuidanceError: the style images' mean embedding equals the samples' (no direction).
    """
    mean_style = F.normalize(guide.encode_image(style.to(guide.device)).mean(0), dim=-1)
    mean_source = F.normalize(guide.encode_image(source_images.to(guide.device)).mean(0), dim=-1)
    delta = mean_style - mean_source
    if float(delta.norm()) < 1e-6:
        raise GuidanceError("the style images look to CLIP like the network's own samples: no direction to adapt to")
    return Critic(guide, float(weight), delta / delta.norm(), mean_style)


class AdaptLoss:
    """The directional loss ``(x, x0) → (L, {name: L_m})`` and the global loss ``x → scalar`` of the module doc.

    Args:
        critics: one or more :class:`Critic`.
        cutouts: matched cutouts per image (0 = the whole image, NADA's choice).
        generator: torch.Generator of the cutouts.
        min_delta_norm: τ.

    Raises:
        GuidanceError: no critic, or a weight ≤ 0.
    """

    def __init__(self, critics: Sequence[Critic], *, cutouts: int = 0, generator: torch.Generator | None = None,
                 min_delta_norm: float = 0.05) -> None:
        if not critics:
            raise GuidanceError("adaptation needs at least one CLIP model")
        if any(not c.weight > 0 for c in critics):
            raise GuidanceError("CLIP model weights must be > 0")
        self.critics = tuple(critics)
        self.norm = sum(c.weight for c in critics)
        self.cutouts = {id(c): Cutouts(CutoutConfig(num_cutouts=cutouts), c.guide.input_size) for c in critics}
        self.generator, self.tau = generator, float(min_delta_norm)

    def names(self) -> list[str]:
        """Log name of each critic's term: ``dir_<model>`` (repeats get ``_2``…)."""
        out: list[str] = []
        for c in self.critics:
            base = "dir_" + str(getattr(c.guide, "model_name", "clip")).rsplit("/", 1)[-1].removesuffix(".json")
            name, i = base, 2
            while name in out:
                name, i = f"{base}_{i}", i + 1
            out.append(name)
        return out

    def __call__(self, images: Tensor, frozen: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``images``: ``G_train(w)`` ``[N, 3, H, W]`` (with gradient); ``frozen``: ``G_frozen(w)``, same shape."""
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        for name, c in zip(self.names(), self.critics):
            cuts, cuts0 = self.cutouts[id(c)].paired(images, frozen.detach(), self.generator)
            e = c.guide.encode_image(cuts)
            with torch.no_grad():
                e0 = c.guide.encode_image(cuts0)
            delta = e - e0  # [N*K, D]
            cos = (delta @ c.direction.to(delta.device)) / delta.norm(dim=-1).clamp_min(self.tau)
            value = (1 - cos).mean()
            terms[name] = value.detach()
            part = (c.weight / self.norm) * value
            total = part if total is None else total + part
        return total, terms

    def global_loss(self, images: Tensor) -> Tensor:
        """``Σ_m λ_m mean_n(1 − cos(E_I^m(x_n), T_m)) / Σ λ_m`` for ``images`` ``[N, 3, H, W]`` in [-1, 1]."""
        total: Tensor | None = None
        for c in self.critics:
            e = c.guide.encode_image(images)
            part = (c.weight / self.norm) * (1 - e @ c.target.to(e.device)).mean()
            total = part if total is None else total + part
        return total
