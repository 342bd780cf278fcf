"""Settings of the real-photo workflows: ``align``, ``encode``, ``project``, ``edit``, ``invert-z``
(:mod:`clipstyle.pipelines.photo`, :mod:`clipstyle.pipelines.photo_edit`, :mod:`clipstyle.pipelines.align`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from clipstyle.workflows.base import Settings, SettingsError, option
from clipstyle.workflows.options import (
    blend_option,
    check_photo,
    blocks_option,
    class_option,
    clip_model_option,
    clip_pretrained_option,
    lr_option,
    mix_option,
    network_option,
    precision_option,
    save_every_option,
    steps_option,
)

__all__ = ["AlignSettings", "EditSettings", "EncodeSettings", "InvertZSettings", "PhotoPathSettings", "ProjectSettings"]

LATENT_SUFFIXES = (".npz", ".npy", ".pt", ".pth")
_NETWORK_HELP = ("Generator: an alias (ffhq, metfaces, sg3-ffhq-r…; see 'clipstyle networks'), a checkpoint path, or "
                 "a file:// / https:// URL. Default: the e4e file's decoder with --encoder, else ffhq.")
_FILE_NETWORK_HELP = ("Generator (alias, path or URL); default: the tuned generator the latent file names, else the "
                      "network it records, else ffhq.")


def photo_option(help: str) -> Any:  # noqa: A002
    """The PHOTO argument: an existing image file (its header is checked before anything loads)."""
    return option(argument=True, path=True, check=check_photo, help=help)


def perceptual_option() -> Any:
    return option("lpips", choices=("lpips", "none"), help=(
        "Perceptual loss: lpips (VGG16 LPIPS, Zhang et al. 2018; weights downloaded once) or none (pixel MSE only)."))


def lpips_weights_option() -> Any:
    return option(None, path=True, help=(
        "Local LPIPS weights instead of downloading: a folder with vgg16-397923af.pth and vgg.pth, or the two files "
        "comma-separated."))


def mse_option() -> Any:
    return option(None, minimum=0.0, help="Weight of the pixel MSE term (default 0 with lpips, 1 with --perceptual none).")


def noise_reg_option() -> Any:
    return option(1e5, minimum=0.0, help=(
        "Weight of the StyleGAN2 noise regularization (multi-scale autocorrelation of the optimized noise maps)."))


def crop_option() -> Any:
    return option(True, help="Center-crop the photo to a square first (default); --no-crop squashes the whole photo "
                             "to a square.")


def align_option() -> Any:
    return option(False, help="Crop the largest face the FFHQ way from dlib's 68 landmarks (offline; needs pip install "
                              "clipstyle[align]).")


def encoder_option(help: str | None = None) -> Any:  # noqa: A002
    return option(None, input_file=True, help=help or (
        "e4e checkpoint (e4e_ffhq_encode.pt): encode the photo first; its decoder is the network unless --network is "
        "given."))


def id_weights_option() -> Any:
    return option(None, input_file=True, help=(
        "ArcFace IR-SE50 weights (model_ir_se50.pth): report the identity similarity to the photo (and, in edit, keep "
        "it)."))


def tune_option() -> Any:
    return option(False, help="Pivotal tuning (PTI): fine-tune the synthesis weights around the projection; the tuned "
                              "generator is saved beside latents.npz.")


def tune_steps_option() -> Any:
    return option(350, minimum=1, maximum=10**6, help="Pivotal tuning steps (paper: 350).")


def tune_lr_option() -> Any:
    return option(3e-4, above=0.0, maximum=1.0, help="Pivotal tuning learning rate (paper: 3e-4).")


def photo_seed_option() -> Any:
    return option(0, minimum=0, maximum=2**32 - 1, help=(
        "Seed of the w statistics / w-noise (projection) and of the cutouts (edit)."))


@dataclass(frozen=True, kw_only=True)
class AlignSettings(Settings):
    """``clipstyle align``: the FFHQ crop of the largest face (Karras et al. 2019, Appendix A)."""

    POSITIONAL: ClassVar[str] = "photo"
    COMMAND: ClassVar[str] = "align"

    photo: str = photo_option("The photo (the largest face is aligned).")
    size: int = option(1024, minimum=8, maximum=8192, help="Output side in pixels (FFHQ: 1024).")


@dataclass(frozen=True, kw_only=True)
class EncodeSettings(Settings):
    """``clipstyle encode``: one e4e forward pass (Tov et al. 2021)."""

    POSITIONAL: ClassVar[str] = "photo"
    COMMAND: ClassVar[str] = "encode"

    photo: str = photo_option("The photo to encode.")
    encoder: str | None = encoder_option("e4e checkpoint (e4e_ffhq_encode.pt; required).")
    network: str | None = network_option(None, help=_NETWORK_HELP)
    crop: bool = crop_option()
    align: bool = align_option()
    id_weights: str | None = id_weights_option()

    def validate(self) -> None:
        if self.encoder is None:
            raise SettingsError("encode needs --encoder E4E.pt (the e4e checkpoint, e.g. e4e_ffhq_encode.pt)")

    def model_keys(self) -> dict[str, tuple | None]:
        keys = super().model_keys()
        keys["G"] = (self.network or self.encoder, None)
        return keys


@dataclass(frozen=True, kw_only=True)
class PhotoPathSettings(Settings):
    """The options of the real-photo path that ``project`` and ``edit`` share: the projection's losses, the
    photo's crop and alignment, e4e, pivotal tuning, ArcFace, seed and GIF frames."""

    perceptual: str = perceptual_option()
    lpips_weights: str | None = lpips_weights_option()
    mse: float | None = mse_option()
    noise_reg: float = noise_reg_option()
    crop: bool = crop_option()
    align: bool = align_option()
    encoder: str | None = encoder_option()
    tune: bool = tune_option()
    tune_steps: int = tune_steps_option()
    tune_lr: float = tune_lr_option()
    id_weights: str | None = id_weights_option()
    class_idx: str | None = class_option()
    seed: int = photo_seed_option()
    save_every: int = save_every_option()
    precision: str = precision_option("the latent (with --tune, the tuned weights too)")

    def validate(self) -> None:
        if self.perceptual == "none" and self.lpips_weights:
            raise SettingsError("--lpips-weights was given with --perceptual none")
        if self.perceptual == "none" and self.mse is not None and self.mse <= 0:
            raise SettingsError("--perceptual none needs --mse > 0: there would be nothing to project by")


@dataclass(frozen=True, kw_only=True)
class ProjectSettings(PhotoPathSettings):
    """``clipstyle project``: the StyleGAN2 projector (Karras et al. 2020, App. D), optionally from an e4e
    encoding, then pivotal tuning (Roich et al. 2022)."""

    POSITIONAL: ClassVar[str] = "photo"
    COMMAND: ClassVar[str] = "project"

    photo: str = photo_option("The photo to project (any size; RGBA, grayscale, 16-bit and EXIF orientation are "
                              "handled).")
    network: str | None = network_option(None, help=_NETWORK_HELP)
    steps: int = steps_option(1000, help="Optimization steps (StyleGAN2 paper: 1000).")
    lr: float = lr_option(0.1, help="Peak Adam learning rate (ramped up over 5%, cosine down over the last 25% of the "
                                    "steps).")
    space: str = option("w", choices=("w", "w+"), help=(
        "w: one w for all styleblocks (NVIDIA's projector); w+: one per styleblock (Image2StyleGAN; first half in W, "
        "then per row)."))
    mix: tuple[str, ...] = mix_option()
    blend: str | None = blend_option(help="Project into a blended network NETWORK@RES[:SMOOTH]: layers up to RES from "
                                          "--network, the rest from NETWORK.")
    init: str = option("mean", choices=("mean", "e4e"), help="Start latent: mean (μ_w) or e4e (the --encoder's "
                                                              "encoding).")

    def validate(self) -> None:
        super().validate()
        if self.tune and self.blend:
            raise SettingsError("--tune and --blend cannot be combined (pivotal tuning tunes one network)")

    def model_keys(self) -> dict[str, tuple | None]:
        keys = super().model_keys()
        keys["G"] = (self.network or self.encoder or "ffhq", None)  # the base network; the pipeline blends
        return keys


@dataclass(frozen=True, kw_only=True)
class EditSettings(PhotoPathSettings):
    """``clipstyle edit``: a photo (aligned, encoded, projected, tuned as asked) or a latent file edited with the
    directional CLIP loss, StyleCLIP's L2 term and the ArcFace identity loss (Patashnik et al. 2021)."""

    POSITIONAL: ClassVar[tuple[str, ...]] = ("photo_or_latents", "prompt")
    COMMAND: ClassVar[str] = "edit"
    ALIASES: ClassVar[dict[str, str]] = {"photo": "photo_or_latents"}

    photo_or_latents: str | None = option(None, argument=True, path=True, help=(
        "A photo to project first, or a latent .npz (ours or NVIDIA's projected_w.npz)."))
    prompt: str | None = option(None, argument=True, help=(
        "The edit, e.g. \"a smiling face\" (with --latents the only argument; optional with --recipe)."))
    latents: str | None = option(None, input_file=True, help=(
        "Start from this latent file instead of a photo (edited in the tuned generator it names, if any)."))
    source: str | None = option(None, help=(
        "Text describing the unedited photo: the edit direction is source → prompt (StyleGAN-NADA's directional CLIP "
        "loss). Default: the recipe's source, else \"a face\"."))
    recipe: str | None = option(None, help=(
        "A curated edit ('clipstyle recipes'): its target text (when PROMPT is omitted), source text, blocks, strength "
        "and keep weight (as --l2) are the defaults; options given explicitly win."))
    network: str | None = network_option(None, help=_FILE_NETWORK_HELP)
    clip_model: str = clip_model_option()
    clip_pretrained: str = clip_pretrained_option()
    steps: int = steps_option(100, help="Edit optimization steps.")
    lr: float = lr_option(0.1, help="Peak Adam learning rate of the edit.")
    blocks: str | None = blocks_option(help="Styleblocks to edit, e.g. 0-3,8 or coarse,middle (default: the recipe's, "
                                            "else all); the others stay exactly at the start.")
    strength: float | None = option(None, minimum=0.0, help=(
        "Weight of the directional CLIP loss (default: the recipe's strength, else 1)."))
    l2: float | None = option(None, minimum=0.0, help=(
        "Weight of ‖w − w_start‖² (StyleCLIP's L2 term; default: the recipe's keep weight, else 0.008)."))
    keep: float = option(0.3, minimum=0.0, help="Weight of the keep-the-look term (CLIP image similarity to the "
                                                "unedited image).")
    mix: tuple[str, ...] = mix_option()
    blend: str | None = blend_option(help="Edit and render in a blended network NETWORK@RES[:SMOOTH] (layers up to RES "
                                          "from --network, the rest from NETWORK); a photo is still projected into "
                                          "--network.")
    cutouts: int | None = option(None, minimum=0, maximum=4096, help=(
        "Random crops per image fed to CLIP (default 32 on GPU, 8 on CPU; 0 = whole image only)."))
    project_steps: int = steps_option(1000, help="Projection steps (photo input).")
    project_lr: float = lr_option(0.1, help="Projection learning rate (photo input).")
    project_space: str = option("w", choices=("w", "w+"), help="Projection space, w or w+ (photo input).")
    id_lambda: float = option(0.1, minimum=0.0, help="Weight of the ArcFace identity loss 1 − similarity(x, photo) "
                                                     "(with --id-weights).")
    space: str = option("w+", choices=("w+", "s"), help=(
        "Edit the W+ latent, or the StyleSpace channels s of the start (StyleCLIP's --work_in_stylespace; --blocks "
        "picks the channels of the layers those rows feed)."))

    def validate(self) -> None:
        super().validate()
        from clipstyle.workflows.text import check_space

        check_space(self.space, self.l2)
        given = [a for a in (self.photo_or_latents, self.prompt) if a is not None]
        if self.latents is not None:
            if len(given) > 1:
                raise SettingsError("give either a photo or --latents FILE, not both (usage: clipstyle edit --latents "
                                    "FILE \"PROMPT\")")
            start, text = self.latents, (given[0] if given else None)
        else:
            if not given:
                raise SettingsError("missing PHOTO_OR_LATENTS: clipstyle edit PHOTO \"PROMPT\" (or --latents FILE)")
            start, text = given[0], (given[1] if len(given) > 1 else None)
        if text is not None and not text.strip() and self.recipe is None:
            raise SettingsError("the prompt is empty: say what the edit should do, e.g. \"a smiling face\"")
        if text is None and self.recipe is None:
            raise SettingsError("missing PROMPT: clipstyle edit PHOTO_OR_LATENTS \"PROMPT\" (or --recipe NAME)")
        if self.recipe is not None:
            from clipstyle.workflows.text import _check_recipe

            _check_recipe(self.recipe, "--recipe")
        from clipstyle.workflows.base import check_input_file

        flag = "PHOTO_OR_LATENTS" if self.latents is None else "--latents"
        if self.is_latent_input(start):
            check_input_file(start, flag, "latent file")
        else:
            check_photo(start, flag)
        if self.is_latent_input(start) and self.tune:
            raise SettingsError("--tune applies to a photo; a latent file is edited in the generator it names")
        if self.tune and self.blend:
            raise SettingsError("--tune and --blend cannot be combined (the tuned weights are A's)")
        # the normalized pair: start = the photo or latent file; prompt = the edit text (or None: the recipe's)
        object.__setattr__(self, "photo_or_latents", start if self.latents is None else None)
        object.__setattr__(self, "prompt", text)

    @staticmethod
    def is_latent_input(path: str) -> bool:
        """True for a latent file (``.npz``, ``.npy``, ``.pt``, ``.pth``), False for a photo."""
        return Path(path).suffix.lower() in LATENT_SUFFIXES

    @property
    def start(self) -> str:
        """The photo or latent file the edit starts from."""
        return self.latents if self.latents is not None else str(self.photo_or_latents)

    def prompt_text(self) -> str:
        """The edit text: ``prompt``, else the recipe's target."""
        if self.prompt is not None and self.prompt.strip():
            return self.prompt
        from clipstyle.guidance.recipes import get_recipe

        return get_recipe(str(self.recipe)).target

    def model_keys(self) -> dict[str, tuple | None]:
        keys = super().model_keys()
        if self.is_latent_input(self.start):
            from clipstyle.pipelines.common import network_for_latents

            keys["G"] = (network_for_latents(Path(self.start), self.network), None)
        else:
            keys["G"] = (self.network or self.encoder or "ffhq", None)
        return keys


@dataclass(frozen=True, kw_only=True)
class InvertZSettings(Settings):
    """``clipstyle invert-z``: the z whose mapping gives a latent's w (W→Z inversion)."""

    POSITIONAL: ClassVar[str] = "latents"
    COMMAND: ClassVar[str] = "invert-z"

    latents: str = option(argument=True, input_file=True, help="A latent .npz (ours, or NVIDIA's projected_w.npz).")
    network: str | None = network_option(None, help=_FILE_NETWORK_HELP)
    truncation: float | None = option(None, minimum=-10.0, maximum=10.0, help=(
        "The truncation psi the latent was made with (undone first; default: the one recorded in the file, else 1)."))
    truncation_cutoff: int | None = option(None, minimum=0, maximum=1024, help="Rows from this index on were not "
                                                                               "truncated.")
    class_idx: str | None = class_option()
    refine_steps: int = option(30, minimum=0, maximum=100000, help=(
        "Levenberg–Marquardt refinement iterations (0 = algebraic solution only)."))
    starts: int = option(16, minimum=0, maximum=10000, help=(
        "Random restarts (and basin hops) when LM stops at a local minimum (0 = none)."))

    def model_keys(self) -> dict[str, tuple | None]:
        from clipstyle.pipelines.common import network_for_latents

        return {"G": (network_for_latents(Path(self.latents), self.network), None)}
