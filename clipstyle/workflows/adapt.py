"""Settings of ``clipstyle adapt`` (:func:`clipstyle.pipelines.adapt.adapt`): a new network from two words
(StyleGAN-NADA, Gal et al. 2022). Defaults are NADA's: batch 2, Adam lr 0.002, adaptive layer selection, the
CLIP models ViT-B/32 and ViT-B/16 together."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from clipstyle.workflows.base import Settings, SettingsError, check_input_file, option
from clipstyle.workflows.options import (
    MAX_SEED,
    _check_clip_model,
    clip_pretrained_option,
    lr_option,
    network_option,
    precision_option,
    resolve_sources,
    steps_option,
    truncation_option,
)

__all__ = ["AdaptSettings", "AdaptSettingsError"]

_ROW_ITEM = re.compile(r"coarse|middle|fine|all|\d+(-\d+)?")


class AdaptSettingsError(SettingsError):
    """A setting of ``adapt`` that cannot work (checked before any model loads; exit code 2)."""


def _check_layers(value: str, flag: str) -> None:
    text = value.strip().lower()
    if text == "auto":
        return
    items = [i.strip() for i in text.split(",")]
    if not text or not all(_ROW_ITEM.fullmatch(i) for i in items):
        raise AdaptSettingsError(f"{flag} must be auto, all, or rows/styleblocks such as 0-7 or coarse,middle; "
                                 f"got {value!r}")


def _check_clip_models(value: str, flag: str) -> None:
    models = [m.strip() for m in value.split(",")]
    if any(not m for m in models):
        raise AdaptSettingsError(f"{flag} {value!r}: give model names separated by commas")
    for m in models:
        _check_clip_model(m, flag)


def _check_weights(value: str, flag: str) -> None:
    try:
        weights = [float(w) for w in value.split(",")]
    except ValueError:
        raise AdaptSettingsError(f"{flag} {value!r}: give numbers separated by commas") from None
    if any(not 0 < w < float("inf") for w in weights):
        raise AdaptSettingsError(f"{flag} must all be > 0 and finite")


def _check_seeds(value: str, flag: str) -> None:
    from clipstyle.pipelines.common import parse_seeds

    try:
        parse_seeds(value)
    except ValueError as exc:  # SpecError
        raise AdaptSettingsError(str(exc).replace("--seeds", flag, 1)) from None


def _check_show(value: tuple[str, ...], flag: str) -> None:
    from clipstyle.pipelines.common import latent_file_of

    for item in value:
        file = latent_file_of(item)  # None for seeds
        if file is not None:
            check_input_file(file.expanduser(), flag, "latent file")


@dataclass(frozen=True, kw_only=True)
class AdaptSettings(Settings):
    """Everything that decides the result of ``clipstyle adapt`` (option names are the CLI's)."""

    COMMAND: ClassVar[str] = "adapt"

    network: str = network_option()
    source: str = option("photo", help="The domain the network draws now (text), e.g. 'photo'.")
    target: str | None = option(None, help="The domain to adapt to (text), e.g. 'pencil sketch'.")
    style_images: tuple[str, ...] = option((), flag="--style-image", input_file=True, path=True, help=(
        "Adapt towards the look of these images instead of --target (repeat for several)."))
    steps: int = steps_option(300, help="Training iterations (NADA: 300 for most domains).")
    batch: int = option(2, minimum=1, maximum=4096, help="Latents per training iteration.")
    lr: float = lr_option(0.002, help="Peak Adam learning rate (constant here: NADA's 0.002, betas 0 and 0.99).")
    layers: str = option("auto", check=_check_layers, help=(
        "Which synthesis layers train: auto (each iteration, the rows a short latent optimization towards the "
        "target moves most; NADA Sec. 4.2), all, or ws rows/styleblocks such as 0-7 or coarse,middle."))
    auto_k: int | None = option(None, minimum=1, maximum=4096, help=(
        "Rows --layers auto picks per iteration (default: two thirds of the rows)."))
    select_steps: int = option(1, minimum=1, maximum=1000, help=(
        "Latent-optimization steps of --layers auto's selection."))
    torgb: bool = option(False, help="Train the toRGB layers too (frozen by default, like the mapping network).")
    clip_model: str = option("ViT-B-32,ViT-B-16", check=_check_clip_models, help=(
        "open_clip models used together, comma-separated (NADA: ViT-B-32,ViT-B-16), or a model-config .json."))
    clip_weights: str | None = option(None, check=_check_weights, help=(
        "Their weights, comma-separated (default: equal)."))
    clip_pretrained: str = clip_pretrained_option()
    templates: bool = option(True, help="Average each text over the shipped prompt templates.")
    cutouts: int | None = option(None, minimum=0, maximum=4096, help=(
        "Random crops per image fed to CLIP, matched between the base's and the adapted image (default 0: the "
        "whole image, as NADA)."))
    seeds: str = option("0-3", check=_check_seeds, help="Fixed seeds of the before/after grid, e.g. 0-3.")
    truncation: float = truncation_option(0.7, help="Truncation psi of the grid's seeds.")
    show: tuple[str, ...] = option((), check=_check_show, resolve=resolve_sources, help=(
        "More latents for the grid: seeds or latent .npz files (e.g. a projected photo); repeatable."))
    seed: int = option(0, minimum=0, maximum=MAX_SEED, help=(
        "Seed of the training latents (not a start image: a network is trained)."))
    preview_every: int = option(10, minimum=0, maximum=10**7, help=(
        "A progress-GIF frame every N steps (0: before and after only)."))
    fps: float = option(10.0, above=0.0, maximum=240.0, help="Frames per second of the progress GIF.")
    precision: str = precision_option("the trained weights (the master copy)")

    def validate(self) -> None:
        target = (self.target or "").strip()
        if not str(self.source).strip():
            raise AdaptSettingsError("--source is empty: name the domain the network draws now, e.g. --source photo")
        if not target and not self.style_images:
            raise AdaptSettingsError("say what to adapt to: --target \"pencil sketch\" or --style-image PATH")
        if target and self.style_images:
            raise AdaptSettingsError("give --target or --style-image, not both")
        if target.lower() == str(self.source).strip().lower():
            raise AdaptSettingsError(f"--source and --target are the same text ({target!r}): there is no direction "
                                     "to follow")
        if self.layers.strip().lower() != "auto" and self.auto_k is not None:
            raise AdaptSettingsError("--auto-k applies to --layers auto only")
        if self.clip_weights is not None and len(self.clip_weights.split(",")) != len(self.clip_models()):
            raise AdaptSettingsError(f"--clip-weights gives {len(self.clip_weights.split(','))} weights for "
                                     f"{len(self.clip_models())} CLIP models")

    def clip_models(self) -> list[str]:
        """The CLIP model names, in order."""
        return [m.strip() for m in self.clip_model.split(",")]

    def clip_weight_values(self) -> list[float]:
        """One weight per CLIP model (equal when not given)."""
        if self.clip_weights is None:
            return [1.0] * len(self.clip_models())
        return [float(w) for w in self.clip_weights.split(",")]

    def model_keys(self) -> dict[str, tuple | None]:
        """The base network; the CLIP model when there is one (several are loaded by the pipeline itself)."""
        keys: dict[str, tuple | None] = {"G": (self.network, None)}
        if len(self.clip_models()) == 1:
            keys["guide"] = (self.clip_models()[0], self.clip_pretrained)
        return keys
