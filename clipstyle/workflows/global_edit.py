"""Settings of the real-time edit workflows: StyleCLIP's global directions (``direction global``) and the
directions found without labels, SeFa (``direction sefa``) and GANSpace's PCA (``direction pca``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clipstyle.workflows.base import Settings, SettingsError, option
from clipstyle.workflows.options import (
    blocks_option,
    clip_model_option,
    clip_pretrained_option,
    latent_network,
    network_option,
    resolve_sources,
    truncation_option,
)

__all__ = ["GlobalEditSettings", "PcaSettings", "SefaSettings"]

NOISE_MODES = ("const", "random", "none")


def _check_text(value: str, flag: str) -> None:
    if not value.strip():
        raise SettingsError(f"{flag} is empty: give a text such as 'a face' / 'a face with a beard'")


@dataclass(frozen=True, kw_only=True)
class GlobalEditSettings(Settings):
    """``clipstyle direction global LATENTS SOURCE TARGET``: StyleCLIP's global direction (Patashnik et al.
    2021, §6) for a text pair, applied to LATENTS in StyleSpace with strength α and threshold β."""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("latents", "source", "target")
    COMMAND: ClassVar[str] = "direction global"

    latents: str = option("0", argument=True, resolve=resolve_sources, help=(
        "What to edit: a latent .npz from project/encode (all items, or FILE#i), or seeds (42, 0-3)."))
    source: str = option("a face", argument=True, check=_check_text, help="Text for the image as it is.")
    target: str = option("a face with a beard", argument=True, check=_check_text, help="Text for the edited image.")
    alpha: float = option(3.0, minimum=-100.0, maximum=100.0, help=(
        "Strength α of the edit (s + α·Δs); negative moves away from the target."))
    beta: float = option(0.12, minimum=0.0, maximum=1.0, help=(
        "Disentanglement threshold β: channels whose relevance |Δi_c·Δt| is below it stay untouched."))
    frames: int = option(7, minimum=1, maximum=101, help="Strengths in the strip/GIF, evenly from -α to α.")
    relevance: str | None = option(None, input_file=True, help=(
        "A relevance file to use instead of computing one: ours (.npz), StyleCLIP's fs3.npy or HyperStyle's "
        "delta_i_c.npy (layout must fit the network)."))
    samples: int = option(100, minimum=1, maximum=100_000, help=(
        "Images per channel for the relevance (StyleCLIP: 100); computed once per network, cached."))
    k: float = option(5.0, above=0.0, maximum=100.0, help=(
        "Relevance probe: move each channel by ±k standard deviations (StyleCLIP: 5)."))
    include_torgb: bool = option(False, help="Also use the toRGB channels (StyleCLIP: conv channels only).")
    stat_samples: int = option(10_000, minimum=2, maximum=10_000_000, help=(
        "Samples of the channel statistics σ (affines only; fast)."))
    relevance_batch: int = option(32, minimum=2, maximum=4096, help=(
        "Images per forward pass while computing the relevance (larger uses a GPU better)."))
    relevance_seed: int = option(0, minimum=0, help="Seed of the relevance's sampled images and statistics.")
    relevance_precision: str = option("fp32", choices=("fp32", "fp16", "bf16"), help=(
        "Precision of the relevance's renders and CLIP: fp32, or fp16/bf16 autocast (faster on GPUs)."))
    network: str | None = network_option(None, help=(
        "Generator (alias, checkpoint or URL); default: the network the latent file records, else ffhq."))
    clip_model: str = clip_model_option()
    clip_pretrained: str = clip_pretrained_option()
    truncation: float = truncation_option(0.7, help="Truncation psi for seed latents (1 = none).")
    noise_mode: str = option("const", choices=NOISE_MODES, help="StyleGAN2 noise inputs: const, random or none.")
    fps: float = option(5.0, above=0.0, maximum=120.0, help="Frames per second of the GIF.")
    report: bool = option(False, ui=False, help=(
        "Print the channels used (layer, kind, index, relevance) as a table (the command line; run.json lists them "
        "anyway)."))
    report_channels: int = option(20, minimum=0, maximum=100_000, help=(
        "How many of the channels used (most relevant first) run.json lists and --report prints."))

    def resolved_network(self) -> str:
        """``network``, else the latent file's own (the one rule: :func:`~clipstyle.workflows.options.latent_network`)."""
        return latent_network(self.latents, self.network)

    def model_keys(self) -> dict[str, tuple | None]:
        return {"G": (self.resolved_network(), None), "guide": (self.clip_model, self.clip_pretrained)}


@dataclass(frozen=True, kw_only=True)
class SefaSettings(Settings):
    """``clipstyle direction sefa``: closed-form factorization (Shen & Zhou 2021, "Closed-Form Factorization of
    Latent Semantics in GANs", §3): the top eigenvectors of AᵀA, A the chosen layers' affine weights."""

    COMMAND: ClassVar[str] = "direction sefa"

    blocks: str | None = blocks_option(help=(
        "Styleblocks whose affine (modulation) weights are factorized and which the sheet moves: indices, "
        "ranges, coarse/middle/fine, all (default all)."))
    top: int = option(10, minimum=1, maximum=4096, help="Number of directions kept (largest eigenvalues first).")
    out: str = option("sefa.npz", path=True, help="Output file in GANSpace's layout (for 'direction apply --component K').")
    overwrite: bool = option(False, help="Replace --out if it exists.")
    std_samples: int = option(10_000, minimum=2, maximum=10_000_000, help=(
        "Samples of w for each direction's standard deviation (so --sigma counts standard deviations)."))
    sheet_seed: int = option(0, minimum=0, help="Seed of the contact sheet's start latent and of the w samples.")
    sheet_sigma: float = option(3.0, above=0.0, maximum=100.0, help=(
        "The sheet's strengths run from -S to S standard deviations."))
    frames: int = option(5, minimum=1, maximum=41, help="Strengths per direction in the contact sheet.")
    sheet: int = option(10, minimum=0, maximum=4096, help="Directions shown in the contact sheet (0 = none).")
    network: str = network_option()
    truncation: float = truncation_option(0.7, help="Truncation psi of the sheet's start latent (1 = none).")


@dataclass(frozen=True, kw_only=True)
class PcaSettings(Settings):
    """``clipstyle direction pca``: GANSpace (Härkönen et al. 2020, "GANSpace: Discovering Interpretable GAN
    Controls", §2): principal components of sampled w."""

    COMMAND: ClassVar[str] = "direction pca"

    samples: int = option(100_000, minimum=2, maximum=100_000_000, help="Sampled w (GANSpace: 10⁶; 10⁵ suffices).")
    components: int = option(32, minimum=1, maximum=4096, help="Principal components kept.")
    blocks: str | None = blocks_option(help=(
        "Styleblocks the contact sheet moves (GANSpace's layer-wise edits; 'direction apply --blocks' does the same)."))
    out: str = option("pca.npz", path=True, help="Output file in GANSpace's layout (for 'direction apply --component K').")
    overwrite: bool = option(False, help="Replace --out if it exists.")
    sheet_seed: int = option(0, minimum=0, help="Seed of the contact sheet's start latent and of the w samples.")
    sheet_sigma: float = option(3.0, above=0.0, maximum=100.0, help=(
        "The sheet's strengths run from -S to S standard deviations."))
    frames: int = option(5, minimum=1, maximum=41, help="Strengths per component in the contact sheet.")
    sheet: int = option(10, minimum=0, maximum=4096, help="Components shown in the contact sheet (0 = none).")
    network: str = network_option()
    truncation: float = truncation_option(0.7, help="Truncation psi of the sheet's start latent (1 = none).")

    def validate(self) -> None:
        if self.components > self.samples:
            raise SettingsError(f"--components {self.components} exceeds --samples {self.samples}")
