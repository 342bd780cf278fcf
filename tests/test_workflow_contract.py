"""One contract over every registered workflow (diffusers' ``PipelineTesterMixin``), on the tiny models of
``tests/_tiny.py``:

* given its models, a workflow runs and loads nothing (every loader is replaced by one that fails the test);
* the same settings and seed give bit-identical ``ws``;
* ``stop()`` is honoured: the run ends early, keeps the best so far and says it was interrupted;
* ``Run.save`` round trip: the folder's ``latents.npz`` holds the run's ``ws`` and ``run.json`` its settings;
* a bad setting raises its error class (:class:`SettingsError`, exit 2 in the CLI) before any model loads;
* the CLI command and the batch job of the workflow give the same ``ws`` as the API.

The minimal settings of each workflow come from its registry entry's ``example`` when it has one, else from
:data:`EXAMPLES` below; a workflow with neither fails :func:`test_every_workflow_has_minimal_settings`.
(The UI endpoint's part of the contract lives with the UI tests.)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clipstyle.workflows.base import SettingsError
from clipstyle.workflows.registry import WORKFLOWS

from . import _tiny
from ._cli import run_cli

STEPS = 3


def _text_example(files: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": "a red car", "network": str(files["network"]), "clip_model": files["clip"],
            "clip_pretrained": "none", "steps": STEPS, "seed": 3, "cutouts": 2}


#: Minimal settings per workflow (``files`` holds the tiny models' paths) for entries without an ``example``.
EXAMPLES = {"text": _text_example}

NAMES = sorted(WORKFLOWS)


class LoadedAModel(AssertionError):
    """A loader ran although every model was given."""


#: Every function that loads a model, by module: each is replaced by one raising :class:`LoadedAModel`.
LOADERS = {
    "clipstyle.workflows.models": ("load_model",),
    "clipstyle.pipelines.common": ("load_network", "load_guide"),
    "clipstyle.generator.loader": ("load_generator", "read_generator_file"),
    "clipstyle.encoders.e4e": ("load_encoder",),
    "clipstyle.encoders.arcface": ("load_face_identity",),
    "clipstyle.inversion.lpips": ("load_lpips",),
}


@pytest.fixture()
def no_loading(monkeypatch):
    """Replace every model loader (and CLIP's constructor) wherever a module holds it."""
    import importlib

    from clipstyle.guidance.clip import CLIPGuide

    originals = []
    for module, names in LOADERS.items():
        mod = importlib.import_module(module)
        originals += [getattr(mod, n) for n in names if hasattr(mod, n)]

    def boom(*args, **kwargs):
        raise LoadedAModel(f"a model was loaded: {args!r:.120}")

    for mod in [m for name, m in list(sys.modules.items()) if name.startswith("clipstyle") and m is not None]:
        for name, value in list(vars(mod).items()):
            if any(value is o for o in originals):
                monkeypatch.setattr(mod, name, boom)
    monkeypatch.setattr(CLIPGuide, "__init__", boom)


@pytest.fixture(scope="module")
def files() -> dict[str, Any]:
    return {"network": _tiny.network_file("sg2"), "clip": _tiny.TINY_CLIP, "e4e": _tiny.e4e_file(),
            "arcface": _tiny.arcface_file()}


@pytest.fixture(scope="module")
def models(files) -> dict[str, Any]:
    """The tiny models of every kind a pipeline can be handed, loaded from the files the settings name."""
    from clipstyle.encoders.arcface import load_face_identity
    from clipstyle.encoders.e4e import load_encoder
    from clipstyle.generator import read_generator_file
    from clipstyle.guidance.clip import CLIPGuide

    return {"G": read_generator_file(files["network"]), "guide": CLIPGuide(files["clip"], None),
            "encoder": load_encoder(files["e4e"]), "identity": load_face_identity(files["arcface"]),
            "perceptual": None}


def example(name: str, files: dict[str, Any]) -> dict[str, Any]:
    wf = WORKFLOWS[name]
    factory = getattr(wf, "example", None)
    if factory is not None:
        return dict(factory(files))
    if name not in EXAMPLES:
        pytest.fail(f"workflow {name!r} has no minimal settings: give its registry entry an example, or add it "
                    f"to EXAMPLES in {Path(__file__).name}")
    return EXAMPLES[name](files)


def run_api(name: str, files, models, **runtime):
    wf = WORKFLOWS[name]
    settings = wf.settings.of(**example(name, files))
    given = {k: models[k] for k in wf.models}
    return settings, wf.function()(settings, **given, device="cpu", **runtime)


def cli_args(name: str, settings_dict: dict[str, Any]) -> list[str]:
    """``clipstyle <command> …`` for ``settings_dict``: the positional option first, every other one by its flag."""
    wf = WORKFLOWS[name]
    cls = wf.settings
    args: list[str] = list(wf.command)
    if cls.POSITIONAL is not None:
        args.append(str(settings_dict[cls.POSITIONAL]))
    for key, value in settings_dict.items():
        if key == cls.POSITIONAL or value is None:
            continue
        flag = cls.flag(key)
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [flag, str(v)]
        else:
            args += [flag, str(value)]
    return args


def test_every_workflow_has_minimal_settings(files):
    assert NAMES, "the registry is empty"
    for name in NAMES:
        settings = WORKFLOWS[name].settings.of(**example(name, files))
        assert set(WORKFLOWS[name].models) <= {"G", "guide", "encoder", "identity", "perceptual"}
        assert settings.to_dict()  # JSON-able


@pytest.mark.parametrize("name", NAMES)
def test_given_models_it_runs_loading_nothing_and_is_reproducible(name, files, models, no_loading):
    _, a = run_api(name, files, models)
    _, b = run_api(name, files, models)
    assert a.ws.dtype == torch.float32 and a.ws.ndim == 3 and a.ws.shape[1:] == (models["G"].num_ws,
                                                                                    models["G"].w_dim)
    assert torch.isfinite(a.ws).all()
    assert torch.equal(a.ws, b.ws)
    assert a.images.dtype == np.uint8 and a.images.shape[0] == a.ws.shape[0]
    if a.result is not None:
        assert len(a.history) == STEPS and not a.interrupted


@pytest.mark.parametrize("name", NAMES)
def test_stop_is_honoured(name, files, models, no_loading):
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # let one step run, then stop

    _, run = run_api(name, files, models, stop=stop)
    if run.result is None:
        pytest.skip(f"{name} has no optimization loop to stop")  # a one-shot workflow
    assert asked, "stop() was never asked"
    assert run.interrupted and len(run.history) < STEPS
    assert torch.isfinite(run.ws).all()


@pytest.mark.parametrize("name", NAMES)
def test_run_save_round_trip(name, files, models, no_loading, tmp_path):
    from clipstyle.latents import load_latents
    from clipstyle.pipelines.run import is_complete

    settings, run = run_api(name, files, models)
    folder = run.save(tmp_path)
    assert is_complete(folder)
    assert np.array_equal(load_latents(folder / "latents.npz").ws, run.ws.numpy())
    record = json.loads((folder / "run.json").read_text())
    saved = record["settings"]
    for key, value in settings.to_dict().items():  # None = "the default": the record holds what it resolved to
        if value is not None and key in saved:
            assert saved[key] == value, key


def _bad_values(cls) -> list[tuple[str, Any]]:
    """One invalid value per option that declares a range or choices."""
    out = []
    for name, spec in cls.specs().items():
        if spec.choices:
            out.append((name, "no-such-choice"))
        elif spec.minimum is not None:
            out.append((name, spec.minimum - 1))
        elif spec.above is not None:
            out.append((name, spec.above))
        elif spec.maximum is not None:
            out.append((name, spec.maximum + 1))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_setting_raises_its_class_before_any_model_loads(name, files, no_loading, tmp_path, capsys):
    wf = WORKFLOWS[name]
    good = example(name, files)
    bad = _bad_values(wf.settings)
    assert bad, f"{name} declares no option with a range or choices"
    for key, value in bad:
        with pytest.raises(SettingsError):
            wf.settings.of(**{**good, key: value})
    with pytest.raises(SettingsError, match="unknown option"):
        wf.settings.of(**good, no_such_option=1)
    # the CLI says it in one line, exit 2, with every loader failing the test if it ran
    key, value = bad[0]
    code, _, err = run_cli([*cli_args(name, {**good, key: value}), "--device", "cpu", "--outdir", tmp_path], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def _latents_of(folder: Path) -> np.ndarray:
    with np.load(folder / "latents.npz") as f:
        return f["ws"]


@pytest.mark.parametrize("name", NAMES)
def test_cli_and_batch_give_the_apis_ws(name, files, models, tmp_path, capsys):
    wf = WORKFLOWS[name]
    good = example(name, files)
    _, api = run_api(name, files, models)
    code, out, err = run_cli([*cli_args(name, good), "--device", "cpu", "--outdir", tmp_path / "cli", "-q"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(_latents_of(Path(out.strip().splitlines()[-1])), api.ws.numpy())
    if not wf.batch:
        return
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"command": name, "id": "job", **good}) + "\n")
    code, out, err = run_cli(["batch", jobs, "--outdir", tmp_path / "batch", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(_latents_of(tmp_path / "batch" / "job"), api.ws.numpy())


def test_the_contract_can_fail(files, models, no_loading):
    """The loader guard is live: a run without its models given trips it."""
    wf = WORKFLOWS[NAMES[0]]
    settings = wf.settings.of(**example(NAMES[0], files))
    with pytest.raises(LoadedAModel):
        wf.function()(settings, device="cpu")
    assert dataclasses.is_dataclass(settings)
