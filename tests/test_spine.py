"""The spine: every workflow's settings class is the one source of its options for the CLI and batch.

These tests fail on any drift between a workflow's settings class and its CLI command or job keys, and on
a settings class that lets a mistake through to the models.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from clipstyle.workflows.base import Settings, SettingsError
from clipstyle.workflows.registry import MODEL_KINDS, WORKFLOWS, get_workflow


def _click_command(words):
    from clipstyle.cli import click_app, walk_commands

    commands = dict(walk_commands(click_app()))
    return commands.get(tuple(words))


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_every_workflow_has_a_cli_command_with_exactly_its_settings_options(name):
    workflow = WORKFLOWS[name]
    cls = workflow.settings
    assert issubclass(cls, Settings) and dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert set(workflow.models) <= set(MODEL_KINDS)
    cmd = _click_command(workflow.command)
    assert cmd is not None, f"no CLI command {' '.join(workflow.command)}"
    params = {p.name: p for p in cmd.params}
    for field in dataclasses.fields(cls):
        assert field.name in params, f"{name}: the CLI lacks --{field.name}"
        param = params[field.name]
        default = field.default
        if default is dataclasses.MISSING:
            assert param.required or getattr(param, "nargs", 1) == -1
            continue
        if isinstance(default, tuple):  # repeatable options start empty on the command line
            assert param.default in (None, (), [])
        else:
            assert param.default == default, f"{name}: --{field.name} defaults to {param.default!r} not {default!r}"
        assert param.help if hasattr(param, "help") and not getattr(param, "param_type_name", "") == "argument" \
            else True
    front = set(params) - {f.name for f in dataclasses.fields(cls)}
    assert front <= {"outdir", "device", "quiet", "out", "overwrite", "prompts", "mp4", "log"}, front


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_every_option_has_help_and_the_settings_round_trip_through_a_job(name, tmp_path):
    cls = WORKFLOWS[name].settings
    for field_name, spec in cls.specs().items():
        assert spec.help.strip() and spec.help.strip()[-1] in ".)", f"{name}.{field_name}: help is one sentence"
    assert cls.specs().keys() == {f.name for f in dataclasses.fields(cls)}


def test_a_job_and_the_api_build_equal_settings_and_the_same_mistake_reads_the_same(tmp_path):
    from clipstyle.workflows.text import TextSettings

    api = TextSettings.of("a cat", steps=5, class_idx="3", mix=("42:coarse",), seed=1)
    job = TextSettings.from_mapping({"prompt": "a cat", "steps": 5, "class": 3, "mix": "42:coarse", "seed": 1})
    assert api == job
    assert TextSettings.from_mapping(json.loads(json.dumps(api.to_dict()))) == api
    for bad, line in [({"steps": 0}, "--steps must be >= 1, got 0"),
                      ({"steps": "ten"}, "--steps must be an integer, got 'ten'"),
                      ({"lr": math.nan}, "--lr must be a finite number, got nan"),
                      ({"l2": -1}, "--l2 must be >= 0, got -1.0"),
                      ({"stepz": 3}, "unknown option 'stepz' for text; did you mean 'steps'?")]:
        with pytest.raises(SettingsError) as api_err:
            TextSettings.of("a cat", **bad)
        with pytest.raises(SettingsError) as job_err:
            TextSettings.from_mapping({"prompt": "a cat", **bad})
        assert str(api_err.value) == str(job_err.value) == line


def test_prompt_mistakes_are_found_before_anything_loads(tmp_path, monkeypatch):
    import clipstyle.pipelines.common as common

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded for a bad prompt")

    monkeypatch.setattr(common, "load_network", no_loading)
    monkeypatch.setattr(common, "load_guide", no_loading)
    from clipstyle.pipelines.text import text_to_image

    for prompt, message in [("a:nan", "prompt weight must be a finite number"),
                            ("a cat | @missing.png", "no such image: missing.png"),
                            ("  ", "the prompt is empty")]:
        with pytest.raises(SettingsError, match=message):
            text_to_image(prompt, network="ffhq")


def test_file_options_say_what_the_path_is(tmp_path):
    import os

    from clipstyle.workflows.photo import ProjectSettings

    with pytest.raises(SettingsError, match=r"PHOTO: .* is a directory, not a photo"):
        ProjectSettings.of(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SettingsError, match=r"PHOTO: .*fifo is a FIFO, not a photo"):
        ProjectSettings.of(str(fifo))
    with pytest.raises(SettingsError, match=r"PHOTO: .*/dev/null is a device, not a photo"):
        ProjectSettings.of("/dev/null")
    with pytest.raises(SettingsError, match=r"PHOTO: no such photo: .*absent.png"):
        ProjectSettings.of(str(tmp_path / "absent.png"))


def test_workflow_run_refuses_another_workflows_settings():
    from clipstyle.workflows.text import TextSettings

    with pytest.raises(SettingsError, match="project needs ProjectSettings, got TextSettings"):
        get_workflow("project").run(TextSettings.of("a cat"))


def test_the_model_cache_loads_each_key_once_and_hands_a_workflow_only_what_it_takes():
    from clipstyle.workflows.models import ModelCache
    from clipstyle.workflows.text import TextSettings

    loads = []

    def loader(kind, key, device, progress):
        loads.append((kind, key))
        return object()

    cache = ModelCache("cpu", loader=loader)
    a = cache.for_workflow(get_workflow("text"), TextSettings.of("a", network="netA", clip_model="ViT-B-32"))
    b = cache.for_workflow(get_workflow("text"), TextSettings.of("b", network="netA", clip_model="ViT-B-32"))
    assert a["G"] is b["G"] and a["guide"] is b["guide"] and set(a) == {"G", "guide"}
    assert loads == [("G", ("netA", None)), ("guide", ("ViT-B-32", "openai"))]
