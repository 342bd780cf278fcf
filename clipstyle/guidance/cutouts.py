"""Random square cutouts: many crops of each image, resized to the CLIP input and encoded in one batch.

Scoring random crops of the image instead of the whole image ("cutouts") makes CLIP guidance much
more robust against adversarial high-frequency patterns; the recipe (crop size drawn as
``u ** cut_pow`` between a minimum and the full side, random offset, resize to the model input)
follows the VQGAN-CLIP line of work (Crowson et al. 2022, arXiv:2204.08583). Here the crops are
resized with antialiased bilinear filtering, which never overshoots the input range.

All crop geometry comes from a :class:`CutoutPlan`, drawn once per call from an optional
``torch.Generator``; the same plan can be applied to two image batches (:meth:`Cutouts.paired`) so
that losses comparing an image with a source image compare the *same* regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from clipstyle.guidance.clip import GuidanceError, _check_images

__all__ = ["CutoutBox", "CutoutConfig", "CutoutPlan", "Cutouts", "default_cutouts"]


@dataclass(frozen=True)
class CutoutConfig:
    """Cutout sampling settings.

    Attributes:
        num_cutouts: K crops per image; 0 = the whole image only, resized (no flip, no noise).
        cut_pow: exponent on the uniform draw of the crop size; > 1 favours small crops.
        min_size_frac: smallest crop side as a fraction of the image's shorter side, in (0, 1].
        max_size_frac: largest crop side as a fraction of the shorter side, in [min_size_frac, 1].
        flip: flip each crop horizontally with probability 1/2.
        noise: add Gaussian noise of std ``uniform(0, noise)`` per crop, in [-1, 1] image units.
    """

    num_cutouts: int = 32
    cut_pow: float = 1.0
    min_size_frac: float = 0.25
    max_size_frac: float = 1.0
    flip: bool = True
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.num_cutouts < 0:
            raise GuidanceError(f"num_cutouts must be >= 0, got {self.num_cutouts}")
        if not self.cut_pow > 0:
            raise GuidanceError(f"cut_pow must be > 0, got {self.cut_pow}")
        if not 0 < self.min_size_frac <= self.max_size_frac <= 1:
            raise GuidanceError(
                f"cutout sizes need 0 < min_size_frac <= max_size_frac <= 1, "
                f"got {self.min_size_frac} and {self.max_size_frac}"
            )
        if not self.noise >= 0:
            raise GuidanceError(f"cutout noise must be >= 0, got {self.noise}")


@dataclass(frozen=True)
class CutoutBox:
    """One square crop ``images[..., top:top+size, left:left+size]``, mirrored if ``flip``."""

    top: int
    left: int
    size: int
    flip: bool


@dataclass(frozen=True)
class CutoutPlan:
    """The geometry of one cutout draw: K boxes (empty = whole image) and a noise std per box."""

    height: int
    width: int
    boxes: tuple[CutoutBox, ...]
    noise_std: tuple[float, ...]


class Cutouts:
    """Turns images [N, 3, H, W] into cutouts [N*K, 3, S, S] (S = ``cut_size``).

    Output order is sample-major: row ``n * K + k`` is cutout k of image n. The same K boxes are
    used for every image of the batch (so a batch and its source images can share them).

    Args:
        cfg: sampling settings.
        cut_size: side S of each output crop, normally the CLIP model's ``input_size``.
    """

    def __init__(self, cfg: CutoutConfig, cut_size: int) -> None:
        if cut_size < 1:
            raise GuidanceError(f"cut_size must be >= 1, got {cut_size}")
        self.cfg = cfg
        self.cut_size = int(cut_size)

    @property
    def num_per_image(self) -> int:
        """Rows of output per input image: K, or 1 when ``num_cutouts`` is 0."""
        return max(1, self.cfg.num_cutouts)

    def sample(self, height: int, width: int, generator: torch.Generator | None = None) -> CutoutPlan:
        """Draw K crop boxes inside a ``height`` x ``width`` image.

        The crop side is ``min + floor(u ** cut_pow * (max - min + 1))`` (clamped to ``max``) with
        ``min/max = round(min/max_size_frac * min(height, width))``; the offsets are uniform over
        every position that keeps the box inside the image. Random numbers come from
        ``generator`` (on its device) or torch's default CPU generator.
        """
        cfg = self.cfg
        if cfg.num_cutouts == 0:
            return CutoutPlan(height, width, (), ())
        side = min(height, width)
        lo = max(1, round(cfg.min_size_frac * side))
        hi = max(lo, min(side, round(cfg.max_size_frac * side)))
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(cfg.num_cutouts, 5, generator=generator, device=device, dtype=torch.float64).tolist()
        boxes, noise = [], []
        for u_size, u_top, u_left, u_flip, u_noise in u:
            size = min(hi, lo + int(u_size**cfg.cut_pow * (hi - lo + 1)))
            top = min(height - size, int(u_top * (height - size + 1)))
            left = min(width - size, int(u_left * (width - size + 1)))
            boxes.append(CutoutBox(top, left, size, cfg.flip and u_flip < 0.5))
            noise.append(u_noise * cfg.noise)
        return CutoutPlan(height, width, tuple(boxes), tuple(noise))

    def crop(self, images: Tensor, plan: CutoutPlan) -> Tensor:
        """Cut ``plan``'s boxes out of ``images`` [N, 3, H, W] → [N*K, 3, S, S] (no noise).

        Differentiable w.r.t. ``images``; values stay within the input range (antialiased bilinear
        resize). With an empty plan the whole image is resized (stretched if not square).
        """
        _check_images(images)
        n, c, h, w = images.shape
        if (h, w) != (plan.height, plan.width):
            raise GuidanceError(f"cutout plan is for {plan.height}x{plan.width} images, got {h}x{w}")
        s = self.cut_size
        if not plan.boxes:
            return self._resize(images, s)
        crops = []
        for box in plan.boxes:
            crop = self._resize(images[:, :, box.top : box.top + box.size, box.left : box.left + box.size], s)
            crops.append(crop.flip(-1) if box.flip else crop)
        return torch.stack(crops, dim=1).reshape(n * len(plan.boxes), c, s, s)

    def noise_for(self, cuts: Tensor, plan: CutoutPlan, generator: torch.Generator | None = None) -> Tensor | None:
        """Per-crop Gaussian noise for ``cuts`` [N*K, 3, S, S] (None when the plan has no noise)."""
        if not plan.boxes or not any(plan.noise_std):
            return None
        device = generator.device if generator is not None else cuts.device
        z = torch.randn(cuts.shape, generator=generator, device=device, dtype=cuts.dtype).to(cuts.device)
        k = len(plan.boxes)
        std = torch.tensor(plan.noise_std, dtype=cuts.dtype, device=cuts.device)
        return (z.view(-1, k, *cuts.shape[1:]) * std.view(1, k, 1, 1, 1)).view(cuts.shape)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Random cutouts of ``images``.

        Args:
            images: float tensor [N, 3, H, W] in [-1, 1].
            generator: optional torch.Generator for reproducible crops (its device is used for the
                random draws).

        Returns:
            [N*K, 3, S, S] (K = ``num_per_image``), sample-major, differentiable w.r.t. ``images``.
        """
        plan = self.sample(images.shape[-2], images.shape[-1], generator)
        cuts = self.crop(images, plan)
        noise = self.noise_for(cuts, plan, generator)
        return cuts if noise is None else cuts + noise

    def paired(
        self, images: Tensor, sources: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The same random cutouts (boxes, flips *and* noise) of two equally shaped batches.

        Args:
            images, sources: float tensors [N, 3, H, W] of the same shape.

        Returns:
            (cutouts of ``images``, cutouts of ``sources``), each [N*K, 3, S, S].
        """
        if images.shape != sources.shape:
            raise GuidanceError(
                f"paired cutouts need equal shapes, got {tuple(images.shape)} and {tuple(sources.shape)}"
            )
        plan = self.sample(images.shape[-2], images.shape[-1], generator)
        a, b = self.crop(images, plan), self.crop(sources, plan)
        noise = self.noise_for(a, plan, generator)
        if noise is not None:
            a, b = a + noise, b + noise
        return a, b

    @staticmethod
    def _resize(x: Tensor, size: int) -> Tensor:
        if x.shape[-2:] == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    def __repr__(self) -> str:
        return f"Cutouts({self.cfg}, cut_size={self.cut_size})"

def default_cutouts(device: str) -> int:
    """Cutouts per image when ``--cutouts`` is not given: 32 on a GPU (CUDA/MPS), 8 on the CPU (the one
    default of every workflow that uses cutouts)."""
    return 8 if str(device).startswith("cpu") else 32
