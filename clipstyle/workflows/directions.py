"""Settings of the latent-direction workflows: ``direction apply``, ``direction learn`` and
``direction from-text`` (:mod:`clipstyle.pipelines.directions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clipstyle.workflows.base import Settings, SettingsError, option
from clipstyle.workflows.creative import (
    _FILE_NETWORK_HELP,
    MAX_FRAMES,
    _check_range,
    _check_seeds,
    file_noise_option,
    fps_option,
    noise_mode_option,
)
from clipstyle.workflows.options import (
    blocks_option,
    class_option,
    clip_model_option,
    clip_pretrained_option,
    latent_network,
    lr_option,
    network_option,
    precision_option,
    resolve_sources,
    steps_option,
    truncation_option,
)

__all__ = ["DirectionApplySettings", "DirectionFromTextSettings", "DirectionLearnSettings"]


@dataclass(frozen=True, kw_only=True)
class DirectionApplySettings(Settings):
    """``clipstyle direction apply``: walk a latent along a direction, ``ws + s·d``."""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("latents", "direction")
    COMMAND: ClassVar[str] = "direction apply"

    latents: str = option(argument=True, resolve=resolve_sources, help="Latent .npz (item 0, or FILE#i) or a seed.")
    direction: str = option(argument=True, input_file=True, help=(
        "Direction file: .npy/.npz/.pt, [w_dim] or [num_ws, w_dim], a GANSpace PCA file with --component, or an S "
        "direction from 'direction global'."))
    strength: str = option("-5:5", check=_check_range, help=(
        "Strength range LO:HI (ws + s·direction); a single number gives one frame."))
    component: int | None = option(None, minimum=0, maximum=100000, help="GANSpace file: use principal component K.")
    sigma: float | None = option(None, minimum=-1e4, maximum=1e4, help=(
        "GANSpace file: scale the component by S standard deviations (default 1)."))
    frames: int = option(11, minimum=1, maximum=MAX_FRAMES, help="Number of strengths (GIF frames).")
    blocks: str | None = blocks_option(help="Only move these styleblocks (default: all).")
    network: str | None = network_option(None, help=_FILE_NETWORK_HELP)
    file_noise: bool = file_noise_option()
    truncation: float = truncation_option(help="Truncation psi for seed latents (1 = none).")
    class_idx: str | None = class_option()
    noise_mode: str = noise_mode_option()
    fps: float = fps_option(10.0)

    def model_keys(self) -> dict[str, tuple | None]:
        return {"G": (latent_network(self.latents, self.network), None)}


@dataclass(frozen=True, kw_only=True)
class DirectionLearnSettings(Settings):
    """``clipstyle direction learn``: InterFaceGAN's linear boundary (Shen et al. 2020)."""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("positive", "negative")
    COMMAND: ClassVar[str] = "direction learn"

    positive: tuple[str, ...] = option(path=True, help="Folder (or .npz files) of latents WITH the attribute; "
                                                       "repeatable.")
    negative: tuple[str, ...] = option(path=True, help="Folder (or .npz files) of latents WITHOUT it; repeatable.")
    space: str = option("w", choices=("w", "w+"), help=(
        "w: one vector per latent (mean of its rows) → [w_dim]; w+: all rows → [num_ws, w_dim]."))
    method: str = option("logistic", choices=("logistic", "svm"), help="logistic (regression) or svm (linear, squared "
                                                                        "hinge).")
    holdout: float = option(0.2, minimum=0.0, maximum=0.9, help="Held-out fraction of each set for the accuracy.")
    seed: int = option(0, minimum=0, maximum=2**32 - 1, help="Seed of the train/held-out split.")

    def validate(self) -> None:
        if not self.positive or not self.negative:
            raise SettingsError("give --positive and --negative latents (folders or .npz files)")


@dataclass(frozen=True, kw_only=True)
class DirectionFromTextSettings(Settings):
    """``clipstyle direction from-text``: a W+ direction turning SOURCE into TARGET (directional CLIP loss)."""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("source", "target")
    COMMAND: ClassVar[str] = "direction from-text"

    source: str = option(argument=True, help="Text for the images as they are, e.g. 'a face'.")
    target: str = option(argument=True, help="Text for the edited images, e.g. 'a smiling face'.")
    seeds: str = option("0-3", check=_check_seeds, help="Samples the direction must work for (seeds, e.g. 0-7).")
    steps: int = steps_option(100)
    lr: float = lr_option(0.02, help="Peak Adam learning rate.")
    blocks: str | None = blocks_option(help="Styleblocks the direction may use (default all).")
    l2: float = option(0.0, minimum=0.0, help="Penalty on the direction's mean squared row norm.")
    ensemble: bool = option(False, help="Average the texts over the shipped prompt templates.")
    cutouts: int = option(8, minimum=0, maximum=4096, help="CLIP cutouts per image.")
    network: str = network_option()
    clip_model: str = clip_model_option()
    clip_pretrained: str = clip_pretrained_option()
    truncation: float = truncation_option(0.7, help="Truncation psi of the samples.")
    class_idx: str | None = class_option()
    precision: str = precision_option("the direction")

    def validate(self) -> None:
        for name in ("source", "target"):
            if not getattr(self, name).strip():
                raise SettingsError(f"{name.upper()} is empty: describe the images, e.g. 'a face'")
