"""Loss terms for latent optimization.

Every term is a callable ``term(images, ws) -> scalar Tensor`` with a ``name`` for logs, where
``images`` is the generator output, float [N, 3, H, W] in [-1, 1], and ``ws`` the W+ latent
[N, num_ws, w_dim]. Terms that do not need one of the two ignore it (``ws`` may be None for them).
Embeddings of fixed targets (texts, image prompts, a whole source image) are computed once, without
gradient, when a term is built.

The objective of text-driven latent optimization is the one of StyleCLIP (Patashnik et al. 2021,
arXiv:2103.17249, Sec. 4): a CLIP distance to the prompt plus ``λ_L2 ‖w − w_s‖²`` and an identity
term; :class:`CombinedLoss` forms such weighted sums.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from torch import Tensor

from clipstyle.guidance.clip import CLIPGuide, GuidanceError, _check_images
from clipstyle.guidance.cutouts import Cutouts
from clipstyle.guidance.prompts import WeightedPrompt, parse_prompts

__all__ = [
    "TextLoss",
    "ImagePromptLoss",
    "DirectionalLoss",
    "LatentL2",
    "KeepIdentity",
    "PixelMSE",
    "CombinedLoss",
    "load_image_prompt",
    "build_prompt_loss",
]

LossTerm = Callable[..., Tensor]


def _weights_tensor(weights: Sequence[float], device: torch.device) -> tuple[Tensor, float]:
    w = torch.as_tensor([float(x) for x in weights], dtype=torch.float32, device=device)
    norm = float(w.abs().sum())
    if norm == 0:
        raise GuidanceError("all prompt weights are zero; give at least one non-zero weight")
    return w, norm


def _match_batch(source: Tensor, n: int, what: str) -> Tensor:
    if source.shape[0] == n:
        return source
    if source.shape[0] == 1:
        return source.expand(n, *source.shape[1:])
    raise GuidanceError(f"{what} has batch {source.shape[0]}, images have {n} (need 1 or {n})")


class TextLoss:
    """Weighted CLIP cosine distance to text prompts, averaged over cutouts and samples.

    ``loss = Σ_t w_t · mean_{n,k}(1 − cos(E_I(cut_k(x_n)), E_T(t))) / Σ_t |w_t|`` — a weighted mean,
    so the value stays in [0, 2] for positive weights; negative weights push away (CLIP: Radford et
    al. 2021). Zero-weight prompts are dropped.

    Args:
        guide: the CLIP model.
        prompts: text prompts (:class:`WeightedPrompt` with ``text`` set, or plain strings = weight 1).
        cutouts: crop sampler; its ``cut_size`` should equal ``guide.input_size``.
        generator: optional torch.Generator for reproducible cutouts.

    Raises:
        GuidanceError: an image prompt among ``prompts``, or no prompt with a non-zero weight.
    """

    name = "clip"

    def __init__(
        self,
        guide: CLIPGuide,
        prompts: Sequence[WeightedPrompt | str],
        cutouts: Cutouts,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        items = [WeightedPrompt(p, None, 1.0) if isinstance(p, str) else p for p in prompts]
        if any(p.text is None for p in items):
            raise GuidanceError("TextLoss takes text prompts only; use ImagePromptLoss for '@image' prompts")
        items = [p for p in items if p.weight != 0]
        if not items:
            raise GuidanceError("no text prompt with a non-zero weight")
        self.guide, self.cutouts, self.generator = guide, cutouts, generator
        self.prompts = tuple(items)
        self.targets = guide.encode_text([p.text for p in items])  # [T, D], no grad
        self.weights, self._norm = _weights_tensor([p.weight for p in items], self.targets.device)

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> Tensor:
        embeds = self.guide.encode_image(self.cutouts(images, self.generator))  # [N*K, D]
        dists = 1 - embeds @ self.targets.T  # [N*K, T]
        return (dists.mean(0) * self.weights).sum() / self._norm


class ImagePromptLoss:
    """Weighted CLIP cosine distance to image prompts, averaged over cutouts and samples.

    ``loss = Σ_j w_j · mean_{n,k}(1 − cos(E_I(cut_k(x_n)), E_I(y_j))) / Σ_j |w_j|``, where each
    prompt image ``y_j`` is encoded whole (resized to the model input), once.

    Args:
        guide: the CLIP model.
        images: prompt images, float [J, 3, H, W] in [-1, 1].
        weights: J floats (None = all 1); negative pushes away.
        cutouts: crop sampler for the optimized images.
        generator: optional torch.Generator for reproducible cutouts.
    """

    name = "image"

    def __init__(
        self,
        guide: CLIPGuide,
        images: Tensor,
        weights: Sequence[float] | Tensor | None,
        cutouts: Cutouts,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_images(images)
        if weights is None:
            weights = [1.0] * images.shape[0]
        weights = [float(x) for x in (weights.tolist() if isinstance(weights, Tensor) else weights)]
        if len(weights) != images.shape[0]:
            raise GuidanceError(f"{images.shape[0]} image prompts but {len(weights)} weights")
        self.guide, self.cutouts, self.generator = guide, cutouts, generator
        with torch.no_grad():
            self.targets = guide.encode_image(images.detach())  # [J, D]
        self.weights, self._norm = _weights_tensor(weights, self.targets.device)

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> Tensor:
        embeds = self.guide.encode_image(self.cutouts(images, self.generator))
        dists = 1 - embeds @ self.targets.T  # [N*K, J]
        return (dists.mean(0) * self.weights).sum() / self._norm


class DirectionalLoss:
    """Directional CLIP loss (Gal et al. 2021, StyleGAN-NADA, arXiv:2108.00946).

    ``ΔT = E_T(target_text) − E_T(source_text)``, ``ΔI = E_I(cut(x)) − E_I(cut(x0))`` with the same
    cutouts (boxes, flips, noise) applied to the image x and its source x0, and
    ``loss = mean_{n,k}(1 − cos(ΔI, ΔT))``: the *change* of the image must point the way the text
    changes, which keeps edits local to what the prompt pair names.

    At the start of an edit x = x0, so ΔI = 0 and the cosine is undefined; we use
    ``cos = ΔI·ΔT̂ / max(‖ΔI‖, τ)`` (τ = ``min_delta_norm``, in units of the unit-norm embeddings):
    exact once ‖ΔI‖ ≥ τ, equal to 1 − 0 = 1 at ΔI = 0, with a gradient bounded by 1/τ (an
    unbounded first gradient would swamp Adam's second-moment estimate for many steps).

    Args:
        guide: the CLIP model.
        source_text, target_text: e.g. "a face" → "a smiling face".
        source_images: x0, float [N or 1, 3, H, W] in [-1, 1] (same H, W as the optimized images).
        cutouts: crop sampler.
        generator: optional torch.Generator for reproducible cutouts.
        min_delta_norm: τ above.

    Raises:
        GuidanceError: the two texts have the same embedding (no direction).
    """

    name = "directional"

    def __init__(
        self,
        guide: CLIPGuide,
        source_text: str,
        target_text: str,
        source_images: Tensor,
        cutouts: Cutouts,
        *,
        generator: torch.Generator | None = None,
        min_delta_norm: float = 0.05,
    ) -> None:
        _check_images(source_images)
        text = guide.encode_text([source_text, target_text])
        delta = text[1] - text[0]
        if float(delta.norm()) < 1e-6:
            raise GuidanceError(
                f"source and target text ('{source_text}' → '{target_text}') give the same CLIP embedding; "
                "the directional loss needs two different texts"
            )
        self.guide, self.cutouts, self.generator = guide, cutouts, generator
        self.direction = delta / delta.norm()  # [D]
        self.source = source_images.detach().to(guide.device)
        self.min_delta_norm = float(min_delta_norm)

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> Tensor:
        source = _match_batch(self.source, images.shape[0], "source_images")
        cuts, source_cuts = self.cutouts.paired(images, source, self.generator)
        embeds = self.guide.encode_image(cuts)
        with torch.no_grad():
            source_embeds = self.guide.encode_image(source_cuts)
        delta = embeds - source_embeds  # [N*K, D]
        cos = (delta @ self.direction) / delta.norm(dim=-1).clamp_min(self.min_delta_norm)
        return (1 - cos).mean()


class LatentL2:
    """Squared L2 distance of ``ws`` to the start latent.

    ``loss = mean_n Σ_{i,j} (ws[n,i,j] − ws0[n,i,j])²`` — summed over all rows and dims, averaged
    over the batch (StyleCLIP's ``‖w − w_s‖²``, Patashnik et al. 2021, Sec. 4). Note the sum: the
    value grows with ``num_ws · w_dim``, so pick its weight per generator (typ. 0.001–0.01 for 18×512).

    Args:
        start_ws: float [N or 1, num_ws, w_dim]; copied and detached.
    """

    name = "l2"

    def __init__(self, start_ws: Tensor) -> None:
        if start_ws.ndim != 3:
            raise GuidanceError(f"start_ws must be [N, num_ws, w_dim], got {tuple(start_ws.shape)}")
        self.start = start_ws.detach().clone()

    def __call__(self, images: Tensor | None, ws: Tensor) -> Tensor:
        if ws is None:
            raise GuidanceError("the latent L2 term needs ws; pass (images, ws)")
        if ws.ndim != 3 or ws.shape[1:] != self.start.shape[1:]:
            raise GuidanceError(f"ws {tuple(ws.shape)} does not match start_ws {tuple(self.start.shape)}")
        start = _match_batch(self.start.to(ws.device), ws.shape[0], "start_ws")
        return (ws - start).pow(2).flatten(1).sum(1).mean()


class KeepIdentity:
    """Keep the look of a source image: CLIP image distance ``1 − cos(E_I(x), E_I(x0))``.

    With ``cutouts`` the distance is averaged over matched cutouts of x and x0 (the same boxes,
    flips and noise); with ``cutouts=None`` (or ``num_cutouts == 0``) whole images are compared and
    E_I(x0) is computed once. A CLIP stand-in for StyleCLIP's ArcFace identity loss.

    Args:
        guide: the CLIP model.
        source_images: x0, float [N or 1, 3, H, W] in [-1, 1].
        cutouts: crop sampler, or None.
        generator: optional torch.Generator for reproducible cutouts.
    """

    name = "keep"

    def __init__(
        self,
        guide: CLIPGuide,
        source_images: Tensor,
        cutouts: Cutouts | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_images(source_images)
        self.guide, self.generator = guide, generator
        self.source = source_images.detach().to(guide.device)
        self.cutouts = cutouts if cutouts is not None and cutouts.cfg.num_cutouts > 0 else None
        self.source_embeds = None
        if self.cutouts is None:
            with torch.no_grad():
                self.source_embeds = guide.encode_image(self.source)  # [N or 1, D]

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> Tensor:
        n = images.shape[0]
        if self.cutouts is None:
            embeds = self.guide.encode_image(images)
            return (1 - (embeds * _match_batch(self.source_embeds, n, "source_images")).sum(-1)).mean()
        cuts, source_cuts = self.cutouts.paired(images, _match_batch(self.source, n, "source_images"), self.generator)
        embeds = self.guide.encode_image(cuts)
        with torch.no_grad():
            source_embeds = self.guide.encode_image(source_cuts)
        return (1 - (embeds * source_embeds).sum(-1)).mean()


class PixelMSE:
    """Mean squared pixel error ``mean((x − target)²)`` over all elements.

    Args:
        target: float [N or 1, C, H, W] in [-1, 1], same C, H, W as the images; copied and detached.
    """

    name = "mse"

    def __init__(self, target: Tensor) -> None:
        if target.ndim != 4:
            raise GuidanceError(f"target must be [N, C, H, W], got {tuple(target.shape)}")
        self.target = target.detach().clone()

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> Tensor:
        if images.shape[1:] != self.target.shape[1:]:
            raise GuidanceError(f"images {tuple(images.shape)} do not match the target {tuple(self.target.shape)}")
        target = _match_batch(self.target.to(images.device), images.shape[0], "target")
        return (images - target).pow(2).mean()


class CombinedLoss:
    """Weighted sum of loss terms.

    Args:
        terms: ``(term, weight)`` pairs; terms with weight 0 are skipped (not evaluated, not
            logged). Log names are the terms' ``name``; repeats get ``_2``, ``_3``, ...

    Calling it returns ``(total, parts)``: ``total = Σ weight · term(images, ws)`` (a scalar with
    gradient) and ``parts`` = {name: unweighted, detached scalar}.
    """

    def __init__(self, terms: Sequence[tuple[LossTerm, float]]) -> None:
        self.terms: list[tuple[str, LossTerm, float]] = []
        seen: dict[str, int] = {}
        for term, weight in terms:
            if not callable(term):
                raise GuidanceError(f"loss term {term!r} is not callable")
            if float(weight) == 0:
                continue
            base = str(getattr(term, "name", type(term).__name__))
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base}_{seen[base]}"
            self.terms.append((name, term, float(weight)))
        if not self.terms:
            raise GuidanceError("no loss term with a non-zero weight")

    @property
    def names(self) -> list[str]:
        """Log names of the active terms, in order."""
        return [name for name, _, _ in self.terms]

    def __call__(self, images: Tensor, ws: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for name, term, weight in self.terms:
            value = term(images, ws)
            parts[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        return total, parts


def load_image_prompt(path: str, size: int) -> Tensor:
    """Read an image file as a prompt tensor with the one image reader, :mod:`clipstyle.io.images`.

    EXIF orientation applied, transparency over white, any colour mode to RGB; then the largest
    centred square, Lanczos-resized to ``size`` and mapped from [0, 1] to [-1, 1].

    Returns:
        float32 tensor [1, 3, size, size] in [-1, 1] (CPU).

    Raises:
        GuidanceError: the file is missing or is not a readable image.
    """
    from clipstyle.io.images import ImageError, load_image_tensor

    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        raise GuidanceError(f"image prompt not found: '{path}'")
    try:
        return load_image_tensor(expanded, size, crop=True)
    except ImageError as e:
        raise GuidanceError(f"image prompt '{path}' is not a readable image file ({e})") from e


def build_prompt_loss(
    guide: CLIPGuide,
    spec: str,
    cutouts: Cutouts,
    image_prompt: str | None = None,
    *,
    generator: torch.Generator | None = None,
) -> list[tuple[LossTerm, float]]:
    """Turn a prompt spec (plus an optional ``--image-prompt`` file) into weighted loss terms.

    Text prompts become one :class:`TextLoss` ("clip"), image prompts one :class:`ImagePromptLoss`
    ("image"); ``image_prompt`` is one more image prompt of weight 1. Each term averages its own
    prompts by |weight|, and its term weight is its share ``Σ|w| in term / Σ|w| overall``, so the
    total equals the weighted mean over all prompts. Image prompts are loaded at
    ``guide.input_size``.

    Returns:
        ``[(term, weight), ...]`` for :class:`CombinedLoss`.

    Raises:
        GuidanceError: nothing to guide by (empty spec and no image prompt), bad spec, unreadable image.
    """
    prompts = parse_prompts(spec) if spec is not None and spec.strip() else []
    if image_prompt:
        prompts.append(WeightedPrompt(text=None, image=image_prompt, weight=1.0))
    prompts = [p for p in prompts if p.weight != 0]
    if not prompts:
        raise GuidanceError("nothing to guide by: give a text prompt or an image prompt")
    total = sum(abs(p.weight) for p in prompts)
    texts = [p for p in prompts if p.text is not None]
    images = [p for p in prompts if p.image is not None]
    terms: list[tuple[LossTerm, float]] = []
    if texts:
        share = sum(abs(p.weight) for p in texts) / total
        terms.append((TextLoss(guide, texts, cutouts, generator=generator), share))
    if images:
        share = sum(abs(p.weight) for p in images) / total
        stack = torch.cat([load_image_prompt(p.image, guide.input_size) for p in images]).to(guide.device)
        terms.append((ImagePromptLoss(guide, stack, [p.weight for p in images], cutouts, generator=generator), share))
    return terms
