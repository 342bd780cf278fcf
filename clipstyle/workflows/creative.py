"""Settings of the creative workflows without an optimization: ``styleblocks``, ``mix``, ``interpolate``,
``render``, ``generate`` and ``blend`` (:mod:`clipstyle.pipelines.creative`).

Latent sources are seeds (``42``, ``42@0.7``, ``0-3``) or latent ``.npz`` files (``face.npz``,
``face.npz#1``); a workflow that reads a latent file renders it with the network chosen by the one rule
of :func:`~clipstyle.workflows.options.latent_network`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clipstyle.workflows.base import Settings, SettingsError, option
from clipstyle.workflows.options import (
    blend_option,
    class_option,
    latent_network,
    network_option,
    resolve_sources,
    truncation_option,
)

__all__ = ["BlendSettings", "GenerateSettings", "InterpolateSettings", "MixSettings", "RenderSettings",
           "StyleblocksSettings"]

NOISE_MODES = ("const", "random", "none")
_FILE_NETWORK_HELP = ("Generator (alias, path or URL); default: the tuned generator the latent file names, else the "
                      "network it records, else ffhq.")
#: Frames of one interpolation or strip, at most (a GIF of more is no longer something to look at).
MAX_FRAMES = 100_000


def noise_mode_option() -> Any:
    return option("const", choices=NOISE_MODES, help="const, random or none (StyleGAN noise inputs).")


def fps_option(default: float) -> Any:
    return option(default, minimum=0.1, maximum=240.0, help="Frames per second of the GIF/MP4.")


def file_noise_option() -> Any:
    return option(True, help="Render with the StyleGAN2 noise maps stored in the latent file (by 'clipstyle project'), "
                             "when it has them and --noise-mode is const.")


def _check_range(value: str, flag: str) -> None:
    from clipstyle.latents.styleblocks import parse_range

    try:
        parse_range(value, flag)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _check_seeds(value: str, flag: str) -> None:
    from clipstyle.pipelines.common import parse_seeds

    try:
        parse_seeds(value)
    except ValueError as exc:
        raise SettingsError(str(exc).replace("--seeds", flag)) from None


@dataclass(frozen=True, kw_only=True)
class StyleblocksSettings(Settings):
    """``clipstyle styleblocks``: scale one row of ``ws`` at a time (Karras et al. 2019, §3)."""

    COMMAND: ClassVar[str] = "styleblocks"

    seed: int | None = option(None, minimum=0, maximum=2**32 - 1, help="Start from this seed's latent.")
    latents: str | None = option(None, path=True, help="…or from a latent .npz (item 0, or FILE#i).")
    blocks: str = option("all", numbers=True, help="Styleblocks to explore: indices, ranges, coarse/middle/fine, all.")
    scale: str = option("0:1", check=_check_range, help="Factor range LO:HI for the row (negative allowed: -2:2).")
    frames: int = option(10, minimum=1, maximum=1000, help="Factors per block (columns of the sheet, GIF frames).")
    around: str = option("zero", choices=("zero", "avg"), help="zero: multiply the row; avg: scale it about w_avg.")
    network: str | None = network_option(None, help=_FILE_NETWORK_HELP)
    truncation: float = truncation_option(help="Truncation psi for seed latents (1 = none).")
    class_idx: str | None = class_option()
    noise_mode: str = noise_mode_option()
    fps: float = fps_option(10.0)

    def validate(self) -> None:
        if (self.seed is None) == (self.latents is None):
            raise SettingsError("give exactly one of --seed S or --latents FILE")

    def model_keys(self) -> dict[str, tuple | None]:
        return {"G": (latent_network(self.latents, self.network), None)}


@dataclass(frozen=True, kw_only=True)
class MixSettings(Settings):
    """``clipstyle mix``: the style-mixing grid (Karras et al. 2019, §3.1)."""

    COMMAND: ClassVar[str] = "mix"

    rows: str = option(flag="--rows", resolve=resolve_sources, help=(
        "Row sources (the rest of the styles): seeds/ranges/.npz, comma list."))
    cols: str = option(flag="--cols", resolve=resolve_sources, help=(
        "Column sources (provide --blocks): seeds/ranges/.npz, comma list."))
    blocks: str = option("coarse", numbers=True, help="Styleblocks taken from the column source, e.g. 0-3 or coarse.")
    network: str = network_option()
    truncation: float = truncation_option(help="Truncation psi for seed latents (1 = none).")
    class_idx: str | None = class_option()
    noise_mode: str = noise_mode_option()


@dataclass(frozen=True, kw_only=True)
class InterpolateSettings(Settings):
    """``clipstyle interpolate``: lerp/slerp between keyframes (Shoemake 1985), in W or Z."""

    POSITIONAL: ClassVar[str] = "sources"
    COMMAND: ClassVar[str] = "interpolate"

    sources: tuple[str, ...] = option(argument=True, resolve=resolve_sources, help=(
        "Keyframes: seeds (42, 42@0.7, 0-3) or latent .npz files."))
    frames: int = option(30, minimum=1, maximum=MAX_FRAMES, help="Frames per segment (keyframe to next).")
    mode: str = option("lerp", choices=("lerp", "slerp"), help="lerp or slerp (Shoemake 1985; about w_avg in W, "
                                                                 "about 0 in Z).")
    space: str = option("w", choices=("w", "z"), help=(
        "w: interpolate ws; z: interpolate z and map each frame with --truncation (needs z: seeds, or latent files "
        "that store z)."))
    loop: bool = option(False, help="Go back to the first keyframe (seamless loop).")
    network: str | None = network_option(None, help=_FILE_NETWORK_HELP)
    truncation: float = truncation_option(help="Truncation psi for seed latents (1 = none).")
    class_idx: str | None = class_option()
    noise_mode: str = noise_mode_option()
    fps: float = fps_option(15.0)

    def validate(self) -> None:
        if not self.sources:
            raise SettingsError("interpolation needs at least two keyframes")

    def model_keys(self) -> dict[str, tuple | None]:
        from clipstyle.pipelines.common import latent_file_of

        files = [f for f in (latent_file_of(spec) for spec in self.sources) if f is not None]
        return {"G": (latent_network(str(files[0]) if files else None, self.network), None)}


@dataclass(frozen=True, kw_only=True)
class RenderSettings(Settings):
    """``clipstyle render``: a latent file (or seeds) rendered, optionally in a blended network."""

    POSITIONAL: ClassVar[str] = "latents"
    COMMAND: ClassVar[str] = "render"

    latents: str = option(argument=True, numbers=True, resolve=resolve_sources, help=(
        "Latent .npz (all items; FILE#i for one) or seeds (0-3)."))
    network: str | None = network_option(None, help=_FILE_NETWORK_HELP)
    blend: str | None = blend_option(help="Render in a blended network NETWORK@RES[:SMOOTH]: synthesis layers up to RES "
                                          "from --network, the rest from NETWORK.")
    file_noise: bool = file_noise_option()
    truncation: float = truncation_option(help="Truncation psi for seed latents (1 = none).")
    class_idx: str | None = class_option()
    noise_mode: str = noise_mode_option()

    def model_keys(self) -> dict[str, tuple | None]:
        return {"G": (latent_network(self.latents, self.network), self.blend)}


def _check_translate(value: str, flag: str) -> None:
    import math

    try:
        tx, ty = (float(v) for v in value.split(","))
    except ValueError:
        raise SettingsError(f"{flag} must be X,Y (e.g. 0.3,0), got {value!r}") from None
    if not (math.isfinite(tx) and math.isfinite(ty)):
        raise SettingsError(f"{flag} must be two finite numbers, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class GenerateSettings(Settings):
    """``clipstyle generate``: images for seeds, like NVIDIA's ``gen_images.py``."""

    COMMAND: ClassVar[str] = "generate"

    network: str = network_option()
    seeds: str = option("0-3", numbers=True, check=_check_seeds, help="Seeds, e.g. 0-7,12 (same z as NVIDIA's gen_images.py).")
    truncation: float | None = truncation_option(None, help=(
        "Truncation psi (1 = none). Default 1, or 0.7 for StyleGAN1 networks (their documented default)."))
    truncation_cutoff: int | None = option(None, minimum=0, maximum=1024, help=(
        "Truncate only rows below this (default: all rows; 8 for StyleGAN1 networks)."))
    truncate_to: str = option("global", choices=("global", "label"), help=(
        "Centre of truncation: 'global' (the network's w_avg) or 'label' (mean w of the --class label, for "
        "conditional networks)."))
    class_idx: str | None = class_option()
    label_scale: float = option(1.0, minimum=-1e3, maximum=1e3, help="Multiply the --class label vector by this.")
    noise_mode: str = noise_mode_option()
    rotate: float | None = option(None, minimum=-1e4, maximum=1e4, help=(
        "StyleGAN3: rotate the input by DEG degrees (default: the checkpoint's stored transform)."))
    translate: str | None = option(None, check=_check_translate, help="StyleGAN3: translate the input by X,Y.")
    grid: bool = option(False, help="Also write grid.png with every image.")


@dataclass(frozen=True, kw_only=True)
class BlendSettings(Settings):
    """``clipstyle blend``: network blending (Pinkney & Adler 2020, 'toonify')."""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("network_a", "network_b")
    COMMAND: ClassVar[str] = "blend"

    network_a: str = option(argument=True, input_file=True, aliases=True, help=(
        "Network for resolutions <= --at, mapping and w_avg."))
    network_b: str = option(argument=True, input_file=True, aliases=True, help=(
        "Network for the higher resolutions (same architecture)."))
    at: int = option(32, minimum=4, maximum=8192, help="Cut resolution (power of two): layers at <= AT from A, the "
                                                        "rest from B.")
    smooth: float | None = option(None, minimum=0.0, maximum=64.0, help=(
        "Spread the switch to B over this many more octaves above AT."))

    def validate(self) -> None:
        if self.at & (self.at - 1):
            raise SettingsError(f"--at must be a power of two (4, 8, 16, …), got {self.at}")
