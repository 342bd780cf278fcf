"""CLI commands derived from a workflow's settings class: no option is declared twice.

:func:`workflow_command` turns a :class:`~clipstyle.workflows.registry.Workflow` into a Typer command
whose options are the fields of its settings class (flag, help, default from :func:`option
<clipstyle.workflows.base.option>`) plus the options every command shares (``--outdir``, ``--device``,
``--quiet``) and any extra front-end options. The command builds the settings (which validates them
before anything loads), then hands them to a body: by default, run the workflow with a progress bar,
save the run folder and print its path.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Optional, Sequence

import typer

from clipstyle.workflows.base import Settings
from clipstyle.workflows.registry import Workflow, get_workflow

__all__ = ["Front", "front_parameters", "run_and_save", "settings_parameters", "workflow_command"]


@dataclass(frozen=True)
class Front:
    """The options of the command line itself, not of the workflow.

    Attributes:
        outdir: folder under which the run folder is created. device: ``auto``, ``cpu``, ``cuda``…
        quiet: no progress bars. log: experiment trackers (``tensorboard[:DIR]``, ``mlflow[:URI]``).
        extra: the command's own extra options by name.
    """

    outdir: Path = Path("out")
    device: str = "auto"
    quiet: bool = False
    log: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def _cli_type(tp: Any) -> tuple[Any, bool]:
    """The Typer type of a settings type, and whether a tuple must be converted back from a list."""
    args = typing.get_args(tp)
    optional = bool(args) and type(None) in args
    base = next((a for a in args if a is not type(None)), tp) if optional else tp
    if typing.get_origin(base) is tuple:
        return Optional[list[typing.get_args(base)[0]]], True
    return (Optional[base] if optional else base), False


def settings_parameters(cls: type[Settings], exclude: Sequence[str] = ()) -> list[inspect.Parameter]:
    """Typer parameters (``Annotated[type, typer.Option(...)]``) of every option of ``cls``, arguments first."""
    hints = cls.hints()
    specs = cls.specs()
    args, opts = [], []
    own = cls.__dict__.get("__annotations__", {})  # the workflow's own options first in --help, shared ones after
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):
        if f.name in exclude or f.name not in specs:
            continue
        spec = specs[f.name]
        cli_type, listed = _cli_type(hints[f.name])
        default = None if listed else f.default
        if f.default is dataclasses.MISSING:
            default = inspect.Parameter.empty
        if spec.argument:
            info = typer.Argument(help=spec.help, show_default=default not in (None, "", inspect.Parameter.empty),
                                  metavar=cls.flag(f.name))
        else:
            decls = [cls.flag(f.name)] + ([spec.short] if spec.short else [])
            if hints[f.name] is bool:
                decls = [f"{decls[0]}/--no-{decls[0][2:]}", *decls[1:]]
            info = typer.Option(*decls, help=spec.help)
        param = inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                  annotation=Annotated[cli_type, info])
        (args if spec.argument else opts).append(param)
    return args + opts


def front_parameters(outdir: str | None = "out", device: bool = True) -> list[inspect.Parameter]:
    """``--outdir`` (unless None), ``--device`` (unless False), ``--quiet``: the options of the command line itself."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = []
    if outdir is not None:
        params.append(inspect.Parameter("outdir", kw, default=Path(outdir), annotation=Annotated[Path, typer.Option(
            help="Folder under which a new run folder is created.")]))
    if device:
        params.append(inspect.Parameter("device", kw, default="auto", annotation=Annotated[str, typer.Option(
            help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda or mps.")]))
    params.append(inspect.Parameter("quiet", kw, default=False, annotation=Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar.")]))
    return params


def workflow_command(name: str, body: Callable[[Settings, Front], None] | None = None, *,
                     extra: Sequence[inspect.Parameter] = (), exclude: Sequence[str] = (),
                     outdir: str | None = "out", device: bool = True, doc: str | None = None) -> Callable[..., None]:
    """A Typer command function for workflow ``name``.

    Args:
        name: the registry name (:func:`~clipstyle.workflows.registry.get_workflow`).
        body: ``body(settings, front)`` does the work (default :func:`run_and_save`); settings are built and
            validated before it is called.
        extra: more Typer parameters (front-end options), passed to the body in ``front.extra``.
        exclude: settings fields the command does not offer (they keep their defaults).
        outdir: the default ``--outdir`` (None: the command has none). device: the command has ``--device``.
        doc: the command's help (default: the body's docstring, else the workflow's summary).
    """
    workflow = get_workflow(name)
    cls = workflow.settings
    params = settings_parameters(cls, exclude) + front_parameters(outdir, device) + list(extra)
    listed = {p.name for p in params if _cli_type(cls.hints().get(p.name, str))[1] and p.name in cls.specs()}
    settings_names = {p.name for p in settings_parameters(cls, exclude)}
    extra_names = [p.name for p in extra]
    run_body = body or (lambda s, front: run_and_save(workflow, s, front))

    def command(**kwargs: Any) -> None:
        values = {k: kwargs[k] for k in settings_names}
        for k in listed:
            values[k] = tuple(values[k] or ())
        settings = cls(**values)
        front = Front(outdir=kwargs.get("outdir") or Path("out"), device=kwargs.get("device", "auto"),
                      quiet=kwargs["quiet"],
                      log=tuple(kwargs.get("log") or ()), extra={k: kwargs[k] for k in extra_names})
        run_body(settings, front)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"{name.replace('-', '_')}_command"
    command.__doc__ = doc or (body.__doc__ if body is not None and body.__doc__ else workflow.summary)
    command.workflow = workflow  # type: ignore[attr-defined]
    return command


def run_and_save(workflow: Workflow, settings: Settings, front: Front, *, progress: bool = True,
                 after: Callable[[Any, Path], None] | None = None, **runtime: Any) -> Path:
    """Run ``workflow``, save its run folder under ``front.outdir`` and print the folder.

    Args:
        progress: show one progress bar over ``settings.steps`` (workflows with stages draw their own bars).
        after: ``after(run, folder)`` prints the command's summary lines (to stderr) before the folder.
        runtime: more keywords of the pipeline (loaded models, ``notify``…).

    Says so when the run was interrupted (the best result so far was saved). Returns the folder.
    """
    from clipstyle.optimize.devices import resolve_device
    from clipstyle.optimize.progress import ProgressBar

    steps = getattr(settings, "steps", None)
    device = resolve_device(front.device)
    show = progress and not front.quiet and steps is not None
    with ProgressBar("optimizing", int(steps or 1), enabled=show) as bar:
        run = workflow.run(settings, device=device, callback=bar if show else None, quiet=front.quiet, **runtime)
    folder = run.save(front.outdir)
    if after is not None:
        after(run, folder)
    typer.echo(str(folder))
    if run.interrupted:
        typer.echo(f"interrupted after {run.result.steps_done} steps; kept the best result so far", err=True)
    return folder
