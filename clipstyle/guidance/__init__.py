"""CLIP guidance: a frozen open_clip model, differentiable preprocessing and cutouts, loss terms, prompts.

Independent of the generator: everything here works on image tensors [N, 3, H, W] in [-1, 1] and
W+ latents [N, num_ws, w_dim]. ``open_clip`` is imported only when a :class:`CLIPGuide` is built.
"""

from clipstyle.guidance.clip import CLIPGuide, GuidanceError
from clipstyle.guidance.cutouts import CutoutBox, CutoutConfig, CutoutPlan, Cutouts
from clipstyle.guidance.losses import (
    CombinedLoss,
    DirectionalLoss,
    ImagePromptLoss,
    KeepIdentity,
    LatentL2,
    PixelMSE,
    TextLoss,
    build_prompt_loss,
    load_image_prompt,
)
from clipstyle.guidance.prompts import WeightedPrompt, parse_prompts

__all__ = [
    "CLIPGuide",
    "GuidanceError",
    "CutoutConfig",
    "CutoutBox",
    "CutoutPlan",
    "Cutouts",
    "WeightedPrompt",
    "parse_prompts",
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
