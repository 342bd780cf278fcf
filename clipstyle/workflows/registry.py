"""The one registry of workflows that the CLI, the web UI and ``clipstyle batch`` look up.

Each :class:`Workflow` names its settings class (validation, defaults, help), its pipeline function
(``module:function``, imported on first use so that ``clipstyle --help`` stays fast), the loaded models
it accepts, and the names it has in each front end. Adding a workflow = a settings class in
``clipstyle/workflows/``, a pipeline function in ``clipstyle/pipelines/``, one entry here, then the
CLI command (``clipstyle.cli.derive.workflow_command``), and the UI tab if it has one.

Torch-free.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from clipstyle.errors import UsageError

if TYPE_CHECKING:
    from clipstyle.workflows.base import Settings
    from clipstyle.workflows.models import ModelCache

__all__ = ["MODEL_KINDS", "UnknownWorkflowError", "Workflow", "WORKFLOWS", "get_workflow"]

#: The loaded models a pipeline may be handed (keyword names of every pipeline function).
MODEL_KINDS = ("G", "guide", "encoder", "identity", "perceptual")


class UnknownWorkflowError(UsageError):
    """A job or request names a workflow that does not exist (exit code 2)."""


@dataclass(frozen=True)
class Workflow:
    """One workflow: its settings class, its pipeline and its names in the front ends.

    Attributes:
        name: the registry key and the batch job's ``command`` (``text``, ``project``, ``direction-global``…).
        settings: ``module:Class`` of its :class:`~clipstyle.workflows.base.Settings` subclass.
        pipeline: ``module:function`` of its pipeline; called as ``function(settings, *, <models>,
            device=, callback=, stop=, log=, quiet=)`` and returning a :class:`~clipstyle.pipelines.run.Run`.
        models: which of :data:`MODEL_KINDS` the pipeline accepts (loaded once by a ModelCache).
        command: its CLI command words (``("project",)``, ``("direction", "global")``); ``("text",)`` is
            also the default command.
        batch: a job file may run it.
        ui: the name of its web-UI endpoint (``/text_to_image``…), None when the UI has none.
        summary: one line for listings.
    """

    name: str
    settings_path: str
    pipeline: str
    models: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    batch: bool = True
    ui: str | None = None
    summary: str = ""

    @property
    def settings(self) -> "type[Settings]":
        """The settings class (imported on first use)."""
        return _attr(self.settings_path)

    def function(self) -> Callable[..., Any]:
        """The pipeline function (imported on first use)."""
        return _attr(self.pipeline)

    def run(self, settings: "Settings", *, models: "ModelCache | None" = None, **runtime: Any) -> Any:
        """Run this workflow on ``settings``: the models it takes come from ``models`` (loaded once per
        key there) unless given in ``runtime``; ``runtime`` holds ``device``, ``callback``, ``stop``,
        ``log``, ``quiet``.

        Raises:
            SettingsError: ``settings`` is not this workflow's settings class.
        """
        from clipstyle.workflows.base import SettingsError

        if not isinstance(settings, self.settings):
            raise SettingsError(f"{self.name} needs {self.settings.__name__}, got {type(settings).__name__}")
        kwargs = dict(runtime)
        if models is not None:
            for kind, value in models.for_workflow(self, settings).items():
                kwargs.setdefault(kind, value)
            kwargs.setdefault("device", models.device)
        return self.function()(settings, **kwargs)


def _attr(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_W = Workflow
_ENTRIES = (
    _W("text", "clipstyle.workflows.text:TextSettings", "clipstyle.pipelines.text:text_to_image",
       ("G", "guide"), ("text",), ui="text_to_image",
       summary="Draw a prompt: optimize W+ so CLIP sees the prompt in the image."),
    _W("align", "clipstyle.workflows.photo:AlignSettings", "clipstyle.pipelines.align:align", (), ("align",),
       batch=False, ui="photo_align", summary="Crop the largest face of a photo the FFHQ way."),
    _W("encode", "clipstyle.workflows.photo:EncodeSettings", "clipstyle.pipelines.photo:encode",
       ("G", "encoder", "identity"), ("encode",), ui="photo_encode", summary="Encode a photo with e4e."),
    _W("project", "clipstyle.workflows.photo:ProjectSettings", "clipstyle.pipelines.photo:project",
       ("G", "encoder", "identity", "perceptual"), ("project",), ui="photo_project",
       summary="Project a photo into the generator (optionally e4e start and pivotal tuning)."),
    _W("edit", "clipstyle.workflows.photo:EditSettings", "clipstyle.pipelines.photo_edit:edit",
       ("G", "guide", "encoder", "identity", "perceptual"), ("edit",), ui="photo_edit",
       summary="Edit a photo or a latent file with a text prompt."),
    _W("invert-z", "clipstyle.workflows.photo:InvertZSettings", "clipstyle.pipelines.photo_edit:invert_z", ("G",),
       ("invert-z",), batch=False, summary="Find the z whose mapping gives a latent's w."),
    _W("styleblocks", "clipstyle.workflows.creative:StyleblocksSettings", "clipstyle.pipelines.creative:styleblocks",
       ("G",), ("styleblocks",), ui="styleblocks", summary="Scale one styleblock at a time: GIFs and a sheet."),
    _W("mix", "clipstyle.workflows.creative:MixSettings", "clipstyle.pipelines.creative:mix_grid", ("G",), ("mix",),
       ui="mix", summary="The style-mixing grid."),
    _W("interpolate", "clipstyle.workflows.creative:InterpolateSettings", "clipstyle.pipelines.creative:interpolate",
       ("G",), ("interpolate",), ui="interpolate", summary="Interpolate between latents into a GIF."),
    _W("render", "clipstyle.workflows.creative:RenderSettings", "clipstyle.pipelines.creative:render", ("G",),
       ("render",), summary="Render a latent file or seeds, optionally in a blended network."),
    _W("generate", "clipstyle.workflows.creative:GenerateSettings", "clipstyle.pipelines.creative:generate", ("G",),
       ("generate",), summary="Images for seeds, like NVIDIA's gen_images.py."),
    _W("blend", "clipstyle.workflows.creative:BlendSettings", "clipstyle.pipelines.creative:blend", (), ("blend",),
       batch=False, ui="blend", summary="Network blending: A's low and B's high resolutions."),
    _W("direction-apply", "clipstyle.workflows.directions:DirectionApplySettings",
       "clipstyle.pipelines.directions:direction_apply", ("G",), ("direction", "apply"),
       summary="Walk a latent along a direction."),
    _W("direction-learn", "clipstyle.workflows.directions:DirectionLearnSettings",
       "clipstyle.pipelines.directions:direction_learn", (), ("direction", "learn"), batch=False,
       summary="Learn an attribute direction from labelled latents (InterFaceGAN)."),
    _W("direction-from-text", "clipstyle.workflows.directions:DirectionFromTextSettings",
       "clipstyle.pipelines.directions:direction_from_text", ("G", "guide"), ("direction", "from-text"), batch=False,
       summary="Find a W+ direction from two texts."),
)

#: Every workflow by name (read-only).
WORKFLOWS: Mapping[str, Workflow] = MappingProxyType({w.name: w for w in _ENTRIES})


def get_workflow(name: str) -> Workflow:
    """The workflow called ``name`` (dashes or underscores).

    Raises:
        UnknownWorkflowError: no such workflow (the message lists them).
    """
    key = str(name).strip().replace("_", "-")
    if key in WORKFLOWS:
        return WORKFLOWS[key]
    raise UnknownWorkflowError(f"unknown command {name!r}; use one of {', '.join(sorted(WORKFLOWS))}")
