"""The main job: ``clipstyle "PROMPT"`` — optimize a StyleGAN's W+ latent against CLIP.

Its options are :class:`~clipstyle.workflows.text.TextSettings`' (derived by :mod:`clipstyle.cli.derive`);
``--prompts FILE`` is the command line's own: one run per line, the models loaded once.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from clipstyle.cli.common import UsageError
from clipstyle.cli.derive import Front, run_and_save, workflow_command

_PROMPTS = inspect.Parameter("prompts", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
    Optional[Path], typer.Option("--prompts", help="A text file with one prompt per line (blank lines and # comments "
                                 "skipped); each prompt gets its own run folder.")])


def _draw(settings, front: Front) -> None:
    """Draw PROMPT: optimize the generator's W+ latent so CLIP sees the prompt in the image.

    Writes result.png, progress.gif, latents.npz and run.json into a new folder under --outdir and prints
    its path. 'clipstyle commands' lists the other commands (info, generate, project, edit, mix, blend…).
    Constraints: --blocks (rows to optimize), --mix (rows fixed to another latent), --blend (optimize in a
    blended network). --recipe NAME applies a curated edit ('clipstyle recipes'); --batch N optimizes N
    starts at once; --prompts FILE runs one prompt per line, each in its own folder.
    """
    from clipstyle.workflows.models import ModelCache
    from clipstyle.workflows.registry import get_workflow

    prompts = front.extra.get("prompts")
    if prompts is not None:
        if settings.prompt.strip():
            raise UsageError("give either a PROMPT or --prompts FILE, not both")
        texts = read_prompts_file(prompts)
        runs = [settings.replace(prompt=text) for text in texts]  # every line checked before anything loads
    else:
        runs = [settings]
    workflow = get_workflow("text")
    models = ModelCache(front.device, progress=not front.quiet)
    keys = settings.model_keys()
    G = models.get("G", keys["G"])
    from clipstyle.latents.constraints import constraint_rows
    from clipstyle.pipelines.common import labels
    from clipstyle.pipelines.text import _recipe

    dev = models.device
    for s in runs:  # the user's mistakes in blocks/mix/class first, before CLIP loads
        constraint_rows(G, s.blocks, list(s.mix), _recipe(s.recipe), dev, labels(G.c_dim, s.class_idx, 1, dev))
    guide = models.get("guide", keys["guide"])
    for s in runs:
        run_and_save(workflow, s, front, G=G, guide=guide)


text_command = workflow_command("text", _draw, extra=[_PROMPTS])


def _annotation(name: str):
    """The Typer annotation of a main-command option, for commands not yet derived from their settings."""
    from clipstyle.cli.derive import settings_parameters
    from clipstyle.workflows.text import TextSettings

    return next(p.annotation for p in settings_parameters(TextSettings) if p.name == name)


NetworkOpt = _annotation("network")
ClipModelOpt = _annotation("clip_model")
ClipPretrainedOpt = _annotation("clip_pretrained")
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda or mps.")]


def read_prompts_file(path: Path) -> list[str]:
    """Prompts of a ``--prompts`` file: one per line, stripped; blank lines and ``#`` comments skipped.

    Raises:
        UsageError: the file is missing or unreadable, or holds no prompt.
    """
    if not path.is_file():
        raise UsageError(f"no such prompts file: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompts file {path}: {type(exc).__name__}") from None
    items = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not items:
        raise UsageError(f"{path} holds no prompt (one per line; # starts a comment)")
    return items
