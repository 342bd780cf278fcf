"""Settings of the main job, ``clipstyle "PROMPT"`` (:func:`clipstyle.pipelines.text.text_to_image`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clipstyle.workflows.base import Settings, SettingsError, option
from clipstyle.workflows.options import (
    blend_option,
    blocks_option,
    compile_option,
    check_prompt,
    class_option,
    clip_model_option,
    clip_pretrained_option,
    lr_option,
    mix_option,
    network_option,
    precision_option,
    save_every_option,
    seed_option,
    steps_option,
    truncation_option,
)

__all__ = ["SPACES", "TextSettings", "check_space"]

#: The spaces an optimization may work in: W+ rows, or StyleSpace S channels (Wu et al. 2021).
SPACES = ("w+", "s")


def check_space(space: str, l2: float | None) -> None:
    """Refuse what cannot work in StyleSpace: ``--l2`` keeps ws near its start, and with ``--space s`` ws is fixed.

    Raises:
        SettingsError: ``space == "s"`` with a positive ``l2``.
    """
    if space == "s" and l2:
        raise SettingsError("--l2 keeps ws near its start, but with --space s ws stays fixed and the S channels "
                            "move: drop --l2 or use --space w+")


def _check_recipe(value: str, flag: str) -> None:
    from clipstyle.guidance.recipes import get_recipe

    try:
        get_recipe(value)
    except ValueError as exc:  # RecipeError
        raise SettingsError(f"{flag}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class TextSettings(Settings):
    """Everything that decides the result of ``clipstyle "PROMPT"`` (StyleCLIP's latent optimization,
    Patashnik et al. 2021, Sec. 4). Option names are the CLI's (``--class`` is ``class_idx``)."""

    POSITIONAL: ClassVar[str] = "prompt"
    COMMAND: ClassVar[str] = "text"

    prompt: str = option("", argument=True, check=check_prompt, help=(
        "What to draw. Weighted prompts: \"a:1 | b:0.5 | c:-1\" (negative weights push away); \"@photo.png\" "
        "inside a prompt is an image prompt."))
    network: str = network_option()
    clip_model: str = clip_model_option()
    clip_pretrained: str = clip_pretrained_option()
    steps: int = steps_option(300)
    lr: float = lr_option(0.1)
    seed: int | None = seed_option()
    truncation: float = truncation_option()
    class_idx: str | None = class_option()
    blocks: str | None = blocks_option()
    cutouts: int | None = option(None, minimum=0, maximum=4096, help=(
        "Random crops per image fed to CLIP in one batch (default 32 on GPU, 8 on CPU; 0 = whole image only)."))
    l2: float | None = option(None, minimum=0.0, help=(
        "Weight of the L2 penalty keeping ws near its start (default 0, or the recipe's keep weight)."))
    image_prompt: str | None = option(None, input_file=True, help=(
        "An image whose CLIP embedding the result should match."))
    mix: tuple[str, ...] = mix_option()
    blend: str | None = blend_option()
    recipe: str | None = option(None, check=_check_recipe, help=(
        "A curated edit ('clipstyle recipes'): its directional CLIP loss, blocks and keep weight (options given "
        "explicitly win)."))
    batch: int = option(1, minimum=1, maximum=4096, help=(
        "Optimize N starts in one batch (seeds SEED…SEED+N-1, or seeds 0…N-1 truncated to psi 0.25 around w_avg "
        "without --seed); writes a grid."))
    save_every: int = save_every_option()
    precision: str = precision_option()
    compile: str = compile_option()
    space: str = option("w+", choices=SPACES, help=(
        "Optimize the W+ latent, or the StyleSpace channels s (StyleCLIP's --work_in_stylespace; --blocks picks "
        "the channels of the layers those rows feed)."))

    def validate(self) -> None:
        if not self.prompt.strip() and self.image_prompt is None and self.recipe is None:
            raise SettingsError("the prompt is empty: say what to draw, e.g. clipstyle \"a smiling child\"")
        if self.seed is not None and self.batch > 1 and self.seed + self.batch - 1 > 2**32 - 1:
            raise SettingsError(f"--seed {self.seed} with --batch {self.batch} runs past the last seed 2**32-1")
        check_space(self.space, self.l2)
