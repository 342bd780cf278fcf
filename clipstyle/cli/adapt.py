"""``clipstyle adapt``: make a network for a new domain from two words (StyleGAN-NADA); its options are the
fields of :class:`~clipstyle.workflows.adapt.AdaptSettings`."""

from __future__ import annotations

import typer

from clipstyle.cli.derive import Front, run_and_save, workflow_command
from clipstyle.workflows.base import Settings
from clipstyle.workflows.registry import get_workflow


def _adapt(settings: Settings, front: Front) -> None:
    """Adapt a network to a new domain named by text: 'photo' → 'pencil sketch' (StyleGAN-NADA).

    Writes generator.safetensors (the adapted network; every command reads it, 'clipstyle convert' exports it),
    a before/after grid result.png over --seeds and --show latents, progress.gif, latents.npz (rendering it with
    'clipstyle render' uses the adapted network) and run.json with the loss history. Ctrl-C keeps the best
    network so far.
    """
    run_and_save(get_workflow("adapt"), settings, front, progress=False, notify=lambda line: typer.echo(line, err=True))


adapt_command = workflow_command("adapt", _adapt)


def register(app: typer.Typer) -> None:
    """Add ``adapt`` to the clipstyle app."""
    app.command("adapt")(adapt_command)
