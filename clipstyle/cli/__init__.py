"""The ``clipstyle`` command line. ``clipstyle "PROMPT"`` is the default command (``clipstyle text``).

Importing this module imports nothing but the standard library, so Ctrl-C at any moment of start-up lands
in :func:`main`'s handler (exit 130, one line) instead of a traceback — or, as before, a segfault when a
handler imported modules while torch's import was half done.

Global options (before the command): ``--help``/``-h``, ``--version``/``-V``, ``--debug`` (tracebacks for
every error; also ``CLIPSTYLE_DEBUG=1``).
"""

from __future__ import annotations

import os
import sys

DEFAULT_COMMAND = "text"
#: Exit codes of a stopped command → its stderr line (SIGINT = Ctrl-C, SIGTERM, SIGHUP; 128 + the signal).
INTERRUPTED = {130: "interrupted", 143: "interrupted (SIGTERM)", 129: "interrupted (SIGHUP)"}
#: How close a first word must be to a command name to be taken for a typo of it (difflib ratio).
NEAR_MISS_CUTOFF = 0.85

__all__ = ["DEFAULT_COMMAND", "build_app", "click_app", "main", "walk_commands"]


def build_app():
    """The Typer application with every command group registered."""
    import typer

    from clipstyle.cli.text import text_command

    app = typer.Typer(
        name="clipstyle", add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
        rich_markup_mode="markdown",
        help="Text-guided image generation and editing with CLIP and StyleGAN2/StyleGAN3.\n\n"
             "The default command is `text`: 'clipstyle \"PROMPT\" [OPTIONS]' is 'clipstyle text \"PROMPT\" "
             "[OPTIONS]' (its options are listed below the commands). Global options: --version, --debug "
             "(show tracebacks). Exit codes: 0 ok, 1 runtime error or bad file, 2 usage error, 130 interrupted.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command(DEFAULT_COMMAND)(text_command)
    from clipstyle.cli import adapt, creative, kernels, networks, photo, ui

    for group in (networks, photo, creative, kernels, ui, adapt):
        group.register(app)
    from clipstyle.cli import batch as batch_cli

    batch_cli.register(app)

    @app.command("commands")
    def commands_command() -> None:
        """List every clipstyle command."""
        import click
        import typer.main

        group = typer.main.get_command(app)
        with click.Context(group, info_name="clipstyle") as ctx:
            typer.echo(group.get_help(ctx))

    return app


def walk_commands(group, path: tuple[str, ...] = ()):
    """Yield ``(name path, click command)`` for every leaf command of a click group, depth first."""
    ctx = group.context_class(group, info_name="clipstyle")
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):  # a group (typer vendors its own click: no isinstance here)
            yield from walk_commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def click_app():
    """The click group of :func:`build_app`, every command guarded by ``handle_errors`` (a new command
    that forgot the decorator gets it here: checks before work, errors by type, Ctrl-C → 130)."""
    import typer.main

    from clipstyle.cli.common import handle_errors

    group = typer.main.get_command(build_app())
    for _, cmd in walk_commands(group):
        if cmd.callback is not None:
            cmd.callback = handle_errors(cmd.callback)
    return group


def _near_miss(word: str, commands: set[str]) -> str | None:
    import difflib

    if not word or word.startswith("-") or any(c.isspace() for c in word) or len(word) < 3:
        return None
    hits = difflib.get_close_matches(word.lower(), sorted(commands), n=1, cutoff=NEAR_MISS_CUTOFF)
    return hits[0] if hits and hits[0] != word else None


def _route(argv: list[str], commands: set[str]) -> list[str]:
    """``clipstyle "PROMPT" …`` goes to the default command; ``clipstyle --help`` stays with the group."""
    if not argv or argv[0] in ("--help", "-h") or argv[0] in commands:
        return argv
    return [DEFAULT_COMMAND, *argv]


def _root_help(group) -> None:
    with group.context_class(group, info_name="clipstyle") as ctx:
        text = group.get_help(ctx)
        if text:
            print(text)
        default = group.get_command(ctx, DEFAULT_COMMAND)
        print(f"\nThe default command, clipstyle [{DEFAULT_COMMAND}] \"PROMPT\" [OPTIONS]:")
        with default.context_class(default, info_name=f"[{DEFAULT_COMMAND}]", parent=ctx) as sub:
            text = default.get_help(sub)
            if text:
                print(text)


def _main(args: list[str]) -> int:
    from clipstyle.errors import EXIT_USAGE

    if args and args[0] in ("--version", "-V"):
        from clipstyle import __version__

        print(f"clipstyle {__version__}")
        return 0
    group = click_app()
    commands = set(group.list_commands(None))  # type: ignore[arg-type]
    if not args or args[0] in ("--help", "-h"):
        _root_help(group)
        return 0
    guess = _near_miss(args[0], commands)
    if guess is not None and len(args[0].split()) == 1 and args[0] not in commands:
        print(f"error: unknown command {args[0]!r}; did you mean {guess!r}? (to draw the word as a prompt: "
              f"clipstyle {DEFAULT_COMMAND} {args[0]!r})", file=sys.stderr)
        return EXIT_USAGE
    click = _click_of(group)
    try:
        code = group.main(args=_route(args, commands), prog_name="clipstyle", standalone_mode=False)
    except click.exceptions.ClickException as exc:  # --steps ten, --save-every 0, a missing argument…
        return _usage_line(exc, click)
    except click.exceptions.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _click_of(group):
    """The click that ``group`` was built with: Typer >= 0.20 vendors its own (``typer._click``), older Typer
    uses ``click``. Its exception classes are the ones the parser raises."""
    core = sys.modules[type(group).__module__]
    vendored = getattr(core, "_click", None)
    if vendored is not None and hasattr(vendored, "exceptions"):
        return vendored
    import click

    return click


def _usage_line(exc, click) -> int:
    """One ``error:`` line on stderr for a click/Typer usage error (never Typer's boxes), with the command whose
    ``--help`` explains it; its exit code (2 for usage errors). A group called without its subcommand shows
    its help instead."""
    from clipstyle.errors import one_line

    no_args = getattr(click.exceptions, "NoArgsIsHelpError", None)
    if no_args is not None and isinstance(exc, no_args):
        print(exc.format_message(), file=sys.stderr)
        return exc.exit_code
    ctx = getattr(exc, "ctx", None)
    hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    print(f"error: {one_line(exc.format_message())}{hint}", file=sys.stderr)
    return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Exits 0, 1 (runtime), 2 (usage) or 130 (interrupted)."""
    real_process = argv is None
    if real_process:  # a one-job process: keep freed tensors' memory warm for reuse (no page faults)
        from clipstyle.optimize.allocator import keep_freed_memory

        keep_freed_memory()
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:cut]
    if debug:
        args = [a for i, a in enumerate(args) if not (a == "--debug" and i < cut)]
    previous = os.environ.get("CLIPSTYLE_DEBUG")
    code = 0
    try:
        if debug:
            os.environ["CLIPSTYLE_DEBUG"] = "1"
        code = _main(args)
    except KeyboardInterrupt:
        code = 130
    finally:
        if debug:
            if previous is None:
                os.environ.pop("CLIPSTYLE_DEBUG", None)
            else:
                os.environ["CLIPSTYLE_DEBUG"] = previous
    if code in INTERRUPTED:  # one line, whichever layer saw the signal (the command's guard, Typer, an import)
        print(INTERRUPTED[code], file=sys.stderr)
    if code in INTERRUPTED and real_process:  # Ctrl-C, SIGTERM, SIGHUP (cli.common.InterruptWatch)
        # An interrupt may have left an import (torch's) half done: leave without running finalizers.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    raise SystemExit(code)
