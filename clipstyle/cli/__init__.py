"""The ``clipstyle`` command line. ``clipstyle "PROMPT"`` is the default command (``clipstyle text``)."""

from __future__ import annotations

import sys

import typer
import typer.main

from clipstyle.cli.text import text_command

DEFAULT_COMMAND = "text"


def build_app() -> typer.Typer:
    """The Typer application with every command group registered."""
    app = typer.Typer(
        name="clipstyle", add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
        rich_markup_mode="markdown",
        help="Text-guided image generation and editing with CLIP and StyleGAN2/StyleGAN3. "
             "'clipstyle \"PROMPT\"' draws a prompt; the commands below do the rest.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command(DEFAULT_COMMAND)(text_command)
    from clipstyle.cli import creative, kernels, networks, photo, ui

    for group in (networks, photo, creative, kernels, ui):
        group.register(app)
    from clipstyle.cli import batch as batch_cli

    batch_cli.register(app)

    @app.command("commands")
    def commands_command() -> None:
        """List every clipstyle command."""
        import click

        group = typer.main.get_command(app)
        with click.Context(group, info_name="clipstyle") as ctx:
            typer.echo(group.get_help(ctx))

    return app


def _route(argv: list[str], commands: set[str]) -> list[str]:
    """``clipstyle "PROMPT" …`` and ``clipstyle --help`` go to the default command."""
    if not argv:
        return [DEFAULT_COMMAND, "--help"]
    if argv[0] in commands:
        return argv
    return [DEFAULT_COMMAND, *argv]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app = build_app()
    click_group = typer.main.get_command(app)
    commands = set(getattr(click_group, "commands", {}))
    args = _route(list(sys.argv[1:] if argv is None else argv), commands)
    click_group.main(args=args, prog_name="clipstyle")
